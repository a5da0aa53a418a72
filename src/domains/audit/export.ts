import { createHash } from 'node:crypto';
import { and, eq, gt, lte, sql } from 'drizzle-orm';
import { z } from 'zod';
import { auditCheckpoints, auditRecords } from '../../db/schema/audit.js';
import { canonicalJson } from '../../lib/audit/canonical.js';
import type { ActorCtx } from '../service-ctx.js';
import { rowsOf } from '../../db/client.js';
import { chainHead, recordAudit, writeCheckpoint, type RawAuditRow } from './chain.js';
import { AuditFilters } from './schemas.js';
import { auditChainForActorAction, auditFilterConditions, selectedChain } from './service.js';

export const ExportInput = z.strictObject({ format: z.enum(['csv', 'ndjson']).default('ndjson'), ...AuditFilters });
export type ExportInput = z.infer<typeof ExportInput>;

export const CSV_COLUMNS = [
  'id', 'chain_id', 'seq', 'created_at', 'organization_id', 'action', 'resource_type', 'resource_id', 'user_id',
  'actor_type', 'ip_address', 'user_agent', 'request_id', 'details', 'previous_hash', 'current_hash',
] as const;

/** RFC 4180: quote a field when it holds a comma, quote, CR or LF; double the quotes inside. */
export function csvField(value: unknown): string {
  if (value === null || value === undefined) return '';
  const text = typeof value === 'string' ? value : typeof value === 'object' ? JSON.stringify(value) : String(value);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export const manifestSigningBytes = (manifest: Record<string, unknown>) => {
  const { signature: _omit, ...unsigned } = manifest;
  return Buffer.from(canonicalJson(unsigned), 'utf8');
};

const BATCH = 1000;


/**
 * Streams one chain's records (seq order, filtered) as CSV or NDJSON with constant memory: rows are read in
 * keyset batches only when the client is ready for more. The export is audited and checkpointed first, and
 * the NDJSON form ends with a manifest signed with the audit key, so a file can be verified offline.
 */
export async function exportAudit(ctx: ActorCtx, input: ExportInput) {
  const { chainId, organizationId } = selectedChain(ctx, input.organization_id);
  const { format, organization_id: _chain, ...filterFields } = input;
  const filters = Object.fromEntries(Object.entries(filterFields).filter(([, v]) => v !== undefined)) as Record<string, string>;

  // The export is recorded first and chained before the head is read, so the file covers its own record.
  await ctx.deps.auditChainer.flush();
  const before = await chainHead(ctx.db, chainId);
  await recordAudit(ctx, {
    action: 'data_export',
    resourceType: 'audit',
    resourceId: chainId,
    organizationId: auditChainForActorAction(ctx, organizationId),
    details: { format, filters, chain_id: chainId, head_seq: before.seq },
  });
  await ctx.deps.auditChainer.flush();
  const head = await chainHead(ctx.db, chainId);
  const anchored = { head, checkpoint: head.seq > 0 ? await writeCheckpoint(ctx.db, ctx.deps.auditSigner, head, ctx.clock.now()) : undefined };
  const checkpoint = anchored.checkpoint ?? (head.seq > 0 ? await findCheckpoint(ctx, chainId, head.seq) : undefined);
  const scope = and(eq(auditRecords.chainId, chainId), lte(auditRecords.seq, head.seq), ...auditFilterConditions(filterFields));

  let lastSeq = 0;
  let count = 0;
  let firstSeq: number | null = null;
  const digest = sha256Incremental();
  const encoder = new TextEncoder();
  let done = false;

  // Rows straight from the driver: no ORM row mapping, created_at formatted by the server as toISOString() would.
  const line = (r: RawAuditRow) => {
    const f = {
      chain_id: r.chain_id, seq: Number(r.seq), previous_hash: r.previous_hash, id: r.id, organization_id: r.organization_id, action: r.action,
      resource_type: r.resource_type, resource_id: r.resource_id, user_id: r.user_id, actor_type: r.actor_type, details: r.details,
      ip_address: r.ip_address, user_agent: r.user_agent, request_id: r.request_id, created_at: r.created_at, current_hash: r.current_hash,
    };
    if (format === 'csv') return CSV_COLUMNS.map((c) => csvField(f[c])).join(',') + '\r\n';
    return JSON.stringify({ type: 'record', ...f }) + '\n';
  };

  const manifest = () => {
    const unsigned = {
      type: 'manifest',
      version: 1,
      chain_id: chainId,
      filters,
      count,
      first_seq: firstSeq,
      last_seq: count > 0 ? lastSeq : null,
      records_digest: digest.hex(),
      head: { seq: head.seq, hash: head.hash },
      checkpoint: checkpoint
        ? { chain_id: checkpoint.chainId, seq: checkpoint.seq, head_hash: checkpoint.headHash, signed_at: checkpoint.signedAt.toISOString(), key_id: checkpoint.keyId, signature: checkpoint.signature }
        : null,
      exported_at: ctx.clock.now().toISOString(),
      key_id: ctx.deps.auditSigner.keyId,
    };
    const signature = ctx.deps.auditSigner.signBytes(manifestSigningBytes(unsigned));
    return JSON.stringify({ ...unsigned, signature }) + '\n';
  };

  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      if (format === 'csv') controller.enqueue(encoder.encode(CSV_COLUMNS.join(',') + '\r\n'));
    },
    async pull(controller) {
      if (done) return;
      const rows = rowsOf<RawAuditRow>(await ctx.db.execute(sql`
        select chain_id, seq, previous_hash, id, organization_id, action, resource_type, resource_id, user_id, actor_type, details,
               ip_address, user_agent, request_id, to_char(created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as created_at, current_hash
        from ${auditRecords} where ${and(scope, gt(auditRecords.seq, lastSeq))} order by seq limit ${BATCH}`));
      if (rows.length > 0) {
        let chunk = '';
        for (const r of rows) {
          chunk += line(r);
          digest.update(r.current_hash);
          firstSeq ??= Number(r.seq);
          count++;
        }
        lastSeq = Number(rows[rows.length - 1]!.seq);
        controller.enqueue(Buffer.from(chunk, 'utf8'));
      }
      if (rows.length < BATCH) {
        done = true;
        if (format === 'ndjson') controller.enqueue(encoder.encode(manifest()));
        controller.close();
      }
    },
  });

  const stamp = ctx.clock.now().toISOString().replace(/[-:]/g, '').replace(/\..*/, '');
  return {
    stream,
    contentType: format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson',
    filename: `audit-${chainId.replace(':', '-')}-${stamp}.${format === 'csv' ? 'csv' : 'ndjson'}`,
    checkpoint,
  };
}

async function findCheckpoint(ctx: ActorCtx, chainId: string, seq: number) {
  const [row] = await ctx.db.select().from(auditCheckpoints).where(and(eq(auditCheckpoints.chainId, chainId), eq(auditCheckpoints.seq, seq)));
  return row;
}

/** records_digest: SHA-256 over the exported records' current_hash values, each followed by "\n". */
function sha256Incremental() {
  const h = createHash('sha256');
  return {
    update: (hash: string) => h.update(`${hash}\n`),
    hex: () => h.copy().digest('hex'),
  };
}
