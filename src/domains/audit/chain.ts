import { and, desc, eq, gt, gte, lte, sql } from 'drizzle-orm';
import { isoTimestampSql } from '../../lib/sql.js';
import { PgTransaction } from 'drizzle-orm/pg-core';
import { rowsOf, sendStatement, sendWithCommit, type DbOrTx } from '../../db/client.js';
import { auditChainHeads, auditCheckpoints, auditPending, type AuditRecordRow } from '../../db/schema/audit.js';
import { AUDIT_DETAILS, redactSecrets, type ActorType, type AuditAction, type AuditResourceType } from '../../lib/audit/actions.js';
import { canonicalJson, GENESIS_HASH, type HashedAuditFields } from '../../lib/audit/canonical.js';
import type { SignedCheckpoint } from '../../lib/audit/verify.js';
import type { AuditSigner } from '../../platform/audit/signer.js';
import type { ServiceCtx } from '../service-ctx.js';

export const PLATFORM_CHAIN = 'platform';
export const chainOf = (organizationId: string | null) => (organizationId ? `org:${organizationId}` : PLATFORM_CHAIN);

export interface AuditEntry {
  action: AuditAction;
  resourceType: AuditResourceType;
  resourceId?: string | null;
  /** The organisation whose chain records the event; null for the platform chain. */
  organizationId: string | null;
  details: Record<string, unknown>;
  /** Defaults to the acting principal (or 'system' without one). */
  userId?: string | null;
  actorType?: ActorType;
}

export function hashedFieldsOf(r: AuditRecordRow): HashedAuditFields {
  return {
    chain_id: r.chainId,
    seq: r.seq,
    previous_hash: r.previousHash,
    id: r.id,
    organization_id: r.organizationId,
    action: r.action,
    resource_type: r.resourceType,
    resource_id: r.resourceId,
    user_id: r.userId,
    actor_type: r.actorType,
    details: r.details,
    ip_address: r.ipAddress,
    user_agent: r.userAgent,
    request_id: r.requestId,
    created_at: r.createdAt.toISOString(),
  };
}

/** A record as written to audit_pending; the chainer gives it its seq and hashes. */
export type PendingAuditRecord = typeof auditPending.$inferSelect;

/**
 * Records an event inside the caller's transaction, so the record commits or rolls back with the change it
 * describes. It goes to audit_pending and is chained right after the commit by the chainer (chainer.ts):
 * the writer never waits for another writer's chain-head lock.
 *
 * On PostgreSQL the insert leaves with the transaction's COMMIT, in the same message (sendWithCommit): if it
 * fails, nothing commits and its error is the transaction's. Elsewhere (PGlite) it is sent at once without
 * waiting for its answer, which inTransaction checks after COMMIT (see there). Invalid details throw here,
 * before anything is sent.
 */
export async function appendAudit(ctx: ServiceCtx, entry: AuditEntry): Promise<PendingAuditRecord> {
  if (!(ctx.db instanceof PgTransaction)) throw new Error('appendAudit must run inside a transaction');
  const { record, values } = pendingRecord(ctx, entry);
  if (!sendWithCommit(ctx.db, PENDING_INSERT_SQL, values)) {
    const sent = Promise.resolve(sendStatement(ctx.db, PENDING_INSERT_SQL, values)).then(() => undefined);
    if (ctx.auditWrites) {
      sent.catch(() => undefined); // handled by inTransaction, which may only look after this rejects
      ctx.auditWrites.push(sent);
    } else await sent;
  }
  ctx.deps.auditChainer.notify();
  return record;
}

/** For events that are not part of a larger change (sign-ins, exports): a statement of their own. */
export async function recordAudit(ctx: ServiceCtx, entry: AuditEntry): Promise<PendingAuditRecord> {
  const { record, values } = pendingRecord(ctx, entry);
  await sendStatement(ctx.db, PENDING_INSERT_SQL, values);
  ctx.deps.auditChainer.notify();
  return record;
}

const PENDING_INSERT_SQL = `insert into audit_pending (id, chain_id, organization_id, action, resource_type, resource_id, user_id, actor_type,
  details, ip_address, user_agent, request_id, created_at)
values ($1, $2, $3, $4, $5, $6, $7, $8, $9::json, $10, $11, $12, $13::timestamptz)`;

/** The pending record for an event and the values of its row, in PENDING_INSERT_SQL's order. */
function pendingRecord(ctx: ServiceCtx, entry: AuditEntry) {
  const r: PendingAuditRecord = {
    id: ctx.ids.uuid(),
    chainId: chainOf(entry.organizationId),
    organizationId: entry.organizationId,
    action: entry.action,
    resourceType: entry.resourceType,
    resourceId: entry.resourceId ?? null,
    userId: entry.userId !== undefined ? entry.userId : (ctx.actor?.userId ?? null),
    actorType: entry.actorType ?? (ctx.actor ? 'user' : 'system'),
    details: AUDIT_DETAILS[entry.action].parse(redactSecrets(entry.details)),
    ipAddress: ctx.ip === 'unknown' ? null : ctx.ip,
    userAgent: ctx.userAgent || null,
    requestId: ctx.requestId,
    createdAt: new Date(ctx.clock.now().getTime()),
  };
  const values = [
    r.id, r.chainId, r.organizationId, r.action, r.resourceType, r.resourceId, r.userId, r.actorType, canonicalJson(r.details),
    r.ipAddress, r.userAgent, r.requestId, r.createdAt.toISOString(),
  ];
  return { record: r, values };
}

export async function writeCheckpoint(db: DbOrTx, signer: AuditSigner, head: { chainId: string; seq: number; hash: string }, now: Date) {
  const signedAt = new Date(now.getTime());
  const { keyId, signature } = signer.sign({ chain_id: head.chainId, seq: head.seq, head_hash: head.hash, signed_at: signedAt.toISOString() });
  const [written] = await db
    .insert(auditCheckpoints)
    .values({ chainId: head.chainId, seq: head.seq, headHash: head.hash, signedAt, keyId, signature })
    .onConflictDoNothing()
    .returning();
  return written;
}

/** Checkpoints every chain whose head moved since its last checkpoint. Returns how many were written. */
export async function checkpointMovedChains(db: DbOrTx, signer: AuditSigner, now: Date): Promise<number> {
  const heads = await db
    .select()
    .from(auditChainHeads)
    .where(
      and(
        gt(auditChainHeads.seq, 0),
        sql`${auditChainHeads.seq} > coalesce((select max(${auditCheckpoints.seq}) from ${auditCheckpoints} where ${auditCheckpoints.chainId} = ${auditChainHeads.chainId}), 0)`,
      ),
    );
  let written = 0;
  for (const h of heads) if (await writeCheckpoint(db, signer, h, now)) written++;
  return written;
}

/** The head of a chain, or seq 0 with the genesis hash when the chain is empty. */
export async function chainHead(db: DbOrTx, chainId: string) {
  const [head] = await db.select().from(auditChainHeads).where(eq(auditChainHeads.chainId, chainId));
  return head ?? { chainId, seq: 0, hash: GENESIS_HASH };
}

/** A record as raw driver rows carry it: the hashed fields, with seq as bigint text, plus current_hash. */
export type RawAuditRow = Omit<HashedAuditFields, 'seq'> & { seq: string; current_hash: string };

/**
 * readChain for verification: the hashed fields straight from the driver (no ORM row mapping, created_at
 * formatted by the server exactly as Date#toISOString() would), batch by batch.
 */
export async function* readChainFields(db: DbOrTx, chainId: string, fromSeq: number, toSeq: number, batchSize = 1000) {
  let next = fromSeq;
  while (next <= toSeq) {
    const rows = rowsOf<RawAuditRow>(await db.execute(sql`
      select id, seq, organization_id, action, resource_type, resource_id, user_id, actor_type, details, ip_address, user_agent, request_id,
             ${sql.raw(isoTimestampSql('created_at'))} as created_at, previous_hash, current_hash
      from audit_records where chain_id = ${chainId} and seq >= ${next} and seq <= ${toSeq} order by seq limit ${batchSize}`));
    if (rows.length === 0) return;
    const batch: { fields: HashedAuditFields; currentHash: string }[] = new Array(rows.length);
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i]!;
      batch[i] = {
        fields: {
          chain_id: chainId, seq: Number(r.seq), previous_hash: r.previous_hash, id: r.id, organization_id: r.organization_id, action: r.action,
          resource_type: r.resource_type, resource_id: r.resource_id, user_id: r.user_id, actor_type: r.actor_type, details: r.details,
          ip_address: r.ip_address, user_agent: r.user_agent, request_id: r.request_id, created_at: r.created_at,
        },
        currentHash: r.current_hash,
      };
    }
    yield batch;
    next = batch[batch.length - 1]!.fields.seq + 1;
  }
}

/** A chain's checkpoints between two seqs, newest first, as ChainVerifier takes them. */
export async function signedCheckpointsOf(db: DbOrTx, chainId: string, fromSeq: number, toSeq: number): Promise<SignedCheckpoint[]> {
  const rows = await db
    .select()
    .from(auditCheckpoints)
    .where(and(eq(auditCheckpoints.chainId, chainId), gte(auditCheckpoints.seq, fromSeq), lte(auditCheckpoints.seq, toSeq)))
    .orderBy(desc(auditCheckpoints.seq));
  return rows.map((c) => ({
    chain_id: c.chainId,
    seq: c.seq,
    head_hash: c.headHash,
    signed_at: c.signedAt.toISOString(),
    key_id: c.keyId,
    signature: c.signature,
  }));
}
