import type { DbOrTx } from '../db/client.js';
import type { Deps } from '../deps.js';
import type { Clock } from '../lib/clock.js';
import type { IdGenerator } from '../lib/ids.js';
import type { Logger } from '../lib/logger.js';
import type { RequestContext } from '../trpc/context.js';
import type { Principal } from './auth/authenticator.js';

/**
 * What a service function receives instead of globals: the db handle to use (the pool or an open
 * transaction), the clock, ids, the acting principal and request facts for logs and audit.
 */
export interface ServiceCtx {
  db: DbOrTx;
  clock: Clock;
  ids: IdGenerator;
  log: Logger;
  deps: Deps;
  actor: Principal | null;
  requestId: string;
  ip: string;
  userAgent: string;
  /** Inside inTransaction: audit inserts sent without waiting for their answers (appendAudit, on PGlite). */
  auditWrites?: Promise<void>[];
}

export type ActorCtx = ServiceCtx & { actor: Principal };

/**
 * Runs fn in a transaction; the ctx it receives carries the transaction as its db handle.
 *
 * On PostgreSQL appendAudit's inserts leave with the COMMIT itself (sendWithCommit), and a failed one fails the
 * transaction with its own error. On PGlite they are sent without waiting and checked here, after COMMIT: one
 * that failed aborted the transaction, so the COMMIT was answered with a rollback (which the driver does not
 * report as an error); its own error is thrown here, as it would have been from appendAudit, and nothing of
 * the change was kept.
 */
export async function inTransaction<C extends ServiceCtx, T>(ctx: C, fn: (tx: C) => Promise<T>): Promise<T> {
  const auditWrites: Promise<void>[] = [];
  let result: T;
  try {
    result = await ctx.db.transaction((db) => fn({ ...ctx, db, auditWrites }));
  } catch (err) {
    // A failed audit insert is the cause, whatever the driver made of the COMMIT it aborted.
    const failed = (await Promise.allSettled(auditWrites)).find((r) => r.status === 'rejected');
    throw failed ? failed.reason : err;
  }
  await Promise.all(auditWrites);
  return result;
}

/** The service view of a request: what both transports and the plain Hono routes hand to services. */
export function serviceCtxFor(req: RequestContext, principal: Principal | null): ServiceCtx {
  const { deps } = req;
  return {
    db: deps.db,
    clock: deps.clock,
    ids: deps.ids,
    log: req.log,
    deps,
    actor: principal,
    requestId: req.requestId,
    ip: req.ip,
    userAgent: req.userAgent,
  };
}
