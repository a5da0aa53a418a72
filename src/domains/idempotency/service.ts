import { and, eq, lt, sql } from 'drizzle-orm';
import type { Db } from '../../db/client.js';
import { idempotencyKeys } from '../../db/schema/projects.js';
import type { Clock } from '../../lib/clock.js';

export const IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000;
/** A key still "in progress" after this long belongs to a request that died; a retry may take it over. */
const STALE_IN_PROGRESS_MS = 60 * 1000;

export type IdempotencyStart =
  | { kind: 'new' }
  | { kind: 'replay'; status: number; body: string }
  | { kind: 'mismatch' }
  | { kind: 'in_progress' };

/**
 * Claims an Idempotency-Key for one user. The first request with a key runs and its response is stored;
 * a retry with the same key and the same request replays that response; the same key with a different
 * request is refused (422); a retry while the first is still running is refused (409).
 */
export async function beginIdempotent(db: Db, clock: Clock, claim: { userId: string; key: string; route: string; requestHash: string }): Promise<IdempotencyStart> {
  const now = clock.now();
  await db.delete(idempotencyKeys).where(and(eq(idempotencyKeys.userId, claim.userId), eq(idempotencyKeys.key, claim.key), lt(idempotencyKeys.expiresAt, now)));
  const [inserted] = await db
    .insert(idempotencyKeys)
    .values({ ...claim, state: 'in_progress', createdAt: now, expiresAt: new Date(now.getTime() + IDEMPOTENCY_TTL_MS) })
    .onConflictDoNothing()
    .returning({ key: idempotencyKeys.key });
  if (inserted) return { kind: 'new' };
  const [existing] = await db.select().from(idempotencyKeys).where(and(eq(idempotencyKeys.userId, claim.userId), eq(idempotencyKeys.key, claim.key)));
  if (!existing) return beginIdempotent(db, clock, claim);
  if (existing.route !== claim.route || existing.requestHash !== claim.requestHash) return { kind: 'mismatch' };
  if (existing.state === 'done') return { kind: 'replay', status: existing.status!, body: existing.responseBody! };
  if (existing.createdAt.getTime() < now.getTime() - STALE_IN_PROGRESS_MS) {
    const [taken] = await db
      .update(idempotencyKeys)
      .set({ createdAt: now })
      .where(and(eq(idempotencyKeys.userId, claim.userId), eq(idempotencyKeys.key, claim.key), eq(idempotencyKeys.state, 'in_progress'), sql`${idempotencyKeys.createdAt} = ${existing.createdAt}`))
      .returning({ key: idempotencyKeys.key });
    if (taken) return { kind: 'new' };
  }
  return { kind: 'in_progress' };
}

export async function completeIdempotent(db: Db, userId: string, key: string, status: number, body: string) {
  await db
    .update(idempotencyKeys)
    .set({ state: 'done', status, responseBody: body })
    .where(and(eq(idempotencyKeys.userId, userId), eq(idempotencyKeys.key, key)));
}

/** Server errors are not stored: the key is released so the client can retry. */
export async function releaseIdempotent(db: Db, userId: string, key: string) {
  await db.delete(idempotencyKeys).where(and(eq(idempotencyKeys.userId, userId), eq(idempotencyKeys.key, key)));
}
