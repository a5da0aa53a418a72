import { and, desc, eq, gte, ilike, isNull, lt, or, sql, type SQL } from 'drizzle-orm';
import { auditCheckpoints, auditRecords } from '../../db/schema/audit.js';
import { badField, notFound } from '../../lib/errors.js';
import { decodeCursor, toPage } from '../../lib/pagination.js';
import { roleHas } from '../../lib/permissions.js';
import { ChainVerifier } from '../../lib/audit/verify.js';
import { GENESIS_HASH } from '../../lib/audit/canonical.js';
import type { ActorCtx } from '../service-ctx.js';
import { likePattern } from '../../lib/sql.js';
import { chainHead, chainOf, PLATFORM_CHAIN, recordAudit, signedCheckpointsOf } from './chain.js';
import { toAuditRecordDto, type AuditFilterInput, type ListAuditInput, type VerifyInput } from './schemas.js';
import { verifyRangeInDatabase } from './verify-in-database.js';

const isSuperAdmin = (ctx: ActorCtx) => ctx.actor.role === 'super_admin';

/**
 * Who sees which records: super admins any chain (optionally narrowed to one), audit:view holders their
 * organisation's chain, everyone else only records where they are the actor.
 */
function visibility(ctx: ActorCtx, selector: string | undefined): SQL | undefined {
  if (selector !== undefined && !isSuperAdmin(ctx)) throw badField('organization_id', 'only super admins may choose the organisation');
  if (isSuperAdmin(ctx)) {
    if (selector === undefined) return undefined;
    return selector === 'platform' ? isNull(auditRecords.organizationId) : eq(auditRecords.organizationId, selector);
  }
  const own = eq(auditRecords.organizationId, ctx.actor.organizationId);
  return roleHas(ctx.actor.role, 'audit:view') ? own : and(own, eq(auditRecords.userId, ctx.actor.userId));
}

/** The list filters, without the visibility rule (the caller adds that, or a chain). */
export function auditFilterConditions(f: Omit<AuditFilterInput, 'organization_id'>): (SQL | undefined)[] {
  return [
    f.action ? eq(auditRecords.action, f.action) : undefined,
    f.resource_type ? eq(auditRecords.resourceType, f.resource_type) : undefined,
    f.resource_id ? eq(auditRecords.resourceId, f.resource_id) : undefined,
    f.user_id ? eq(auditRecords.userId, f.user_id) : undefined,
    f.from ? gte(auditRecords.createdAt, new Date(f.from)) : undefined,
    f.to ? lt(auditRecords.createdAt, new Date(f.to)) : undefined,
    f.search
      ? or(
          ilike(auditRecords.resourceId, likePattern(f.search)),
          ilike(auditRecords.requestId, likePattern(f.search)),
          ilike(auditRecords.ipAddress, likePattern(f.search)),
          sql`${auditRecords.details}::text ilike ${likePattern(f.search)}`,
        )
      : undefined,
  ];
}

export async function listAudit(ctx: ActorCtx, input: ListAuditInput) {
  await ctx.deps.auditChainer.flush();
  const after = decodeCursor(input.cursor);
  const rows = await ctx.db
    .select()
    .from(auditRecords)
    .where(and(visibility(ctx, input.organization_id), ...auditFilterConditions(input), after ? lt(auditRecords.id, after) : undefined))
    .orderBy(desc(auditRecords.id))
    .limit(input.limit + 1);
  return toPage(rows, input.limit, toAuditRecordDto);
}

export async function getAudit(ctx: ActorCtx, id: string) {
  await ctx.deps.auditChainer.flush();
  const [row] = await ctx.db
    .select()
    .from(auditRecords)
    .where(and(eq(auditRecords.id, id), visibility(ctx, undefined)));
  if (!row) throw notFound('audit record');
  return toAuditRecordDto(row);
}

/** The chain a request addresses: the caller's organisation unless a super admin names another one. */
export function selectedChain(ctx: ActorCtx, selector: string | undefined): { chainId: string; organizationId: string | null } {
  if (selector !== undefined && !isSuperAdmin(ctx)) throw badField('organization_id', 'only super admins may choose the organisation');
  if (selector === 'platform') return { chainId: PLATFORM_CHAIN, organizationId: null };
  const organizationId = selector ?? ctx.actor.organizationId;
  return { chainId: chainOf(organizationId), organizationId };
}

/** Super admins acting on another organisation's chain are recorded on the platform chain. */
export function auditChainForActorAction(ctx: ActorCtx, organizationId: string | null): string | null {
  return isSuperAdmin(ctx) && organizationId !== ctx.actor.organizationId ? null : organizationId;
}

export async function verifyChain(ctx: ActorCtx, input: VerifyInput) {
  const { chainId, organizationId } = selectedChain(ctx, input.organization_id);
  await ctx.deps.auditChainer.flush();
  const head = await chainHead(ctx.db, chainId);
  const [newestCheckpoint] = await ctx.db
    .select({ seq: auditCheckpoints.seq })
    .from(auditCheckpoints)
    .where(eq(auditCheckpoints.chainId, chainId))
    .orderBy(desc(auditCheckpoints.seq))
    .limit(1);
  const fromSeq = input.from_seq ?? 1;
  const toSeq = input.to_seq ?? Math.max(head.seq, newestCheckpoint?.seq ?? 0);
  if (toSeq < fromSeq && input.to_seq !== undefined) throw badField('to_seq', 'must not be below from_seq');

  let previousHash = GENESIS_HASH;
  if (fromSeq > 1) {
    const [before] = await ctx.db
      .select({ hash: auditRecords.currentHash })
      .from(auditRecords)
      .where(and(eq(auditRecords.chainId, chainId), eq(auditRecords.seq, fromSeq - 1)));
    if (!before) throw badField('from_seq', 'the record before from_seq does not exist');
    previousHash = before.hash;
  }
  const checkpoints = await signedCheckpointsOf(ctx.db, chainId, fromSeq, toSeq);
  const verifier = new ChainVerifier(chainId, fromSeq, previousHash, checkpoints);
  const { rehashed } = await verifyRangeInDatabase(ctx.deps.database, ctx.db, verifier, chainId, fromSeq, toSeq, checkpoints.map((c) => c.seq));
  if (rehashed > 0) ctx.log.info({ chainId, rehashed }, 'audit verify: records hashed again by the service');
  const result = verifier.finish(ctx.deps.auditSigner.verificationKeys, Math.min(head.seq, toSeq));
  const failure = result.firstFailure;
  await recordAudit(ctx, {
    action: 'audit_verify',
    resourceType: 'audit',
    resourceId: chainId,
    organizationId: auditChainForActorAction(ctx, organizationId),
    details: { chain_id: chainId, from_seq: fromSeq, to_seq: toSeq, ok: result.ok, first_failure_kind: failure?.kind ?? null },
  });
  return {
    ok: result.ok,
    chain_id: chainId,
    range: { from_seq: fromSeq, to_seq: toSeq },
    checked: result.checked,
    head: { seq: head.seq, hash: head.hash },
    checkpoints_checked: result.checkpointsChecked,
    first_failure: failure,
  };
}
