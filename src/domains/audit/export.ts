import { createHash } from 'node:crypto';
import { and, eq, gt, lte, sql, type SQL } from 'drizzle-orm';
import { PgDialect } from 'drizzle-orm/pg-core';
import { z } from 'zod';
import { auditCheckpoints, auditRecords } from '../../db/schema/audit.js';
import { canonicalJson } from '../../lib/audit/canonical.js';
import type { ActorCtx } from '../service-ctx.js';
import { rowsOf, type Database } from '../../db/client.js';
import { chainHead, recordAudit, writeCheckpoint, type RawAuditRow } from './chain.js';
import { AuditFilters } from './schemas.js';
import { auditChainForActorAction, auditFilterConditions, selectedChain } from './service.js';
import { isoTimestampSql } from '../../lib/sql.js';
import { recordJsonSql } from './record-json-sql.js';

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
  const checkpoint =
    head.seq > 0 ? ((await writeCheckpoint(ctx.db, ctx.deps.auditSigner, head, ctx.clock.now())) ?? (await findCheckpoint(ctx, chainId, head.seq))) : undefined;
  const scope = and(eq(auditRecords.chainId, chainId), lte(auditRecords.seq, head.seq), ...auditFilterConditions(filterFields));

  let lastSeq = 0;
  let count = 0;
  let firstSeq: number | null = null;
  const digest = sha256Incremental();
  const encoder = new TextEncoder();
  let done = false;

  // NDJSON from PostgreSQL: one COPY for the whole range, the lines written by the server (copyNdjson).
  const copyOut = format === 'ndjson' ? ctx.deps.database.copyOut : undefined;
  const copied = copyOut ? copyNdjson(copyOut, sql`select ${NDJSON_LINE} from ${auditRecords} where ${scope} order by seq`) : undefined;

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
    async cancel() {
      // The client went away: end the COPY, which closes its connection.
      await copied?.return(undefined);
    },
    async pull(controller) {
      if (done) return;
      let chunk = '';
      let rows: { seq: string | number; current_hash: string }[];
      if (copied) {
        const part = await copied.next();
        ({ chunk, rows } = part.done ? { chunk: '', rows: [] } : part.value);
      } else {
        const records = rowsOf<RawAuditRow>(await ctx.db.execute(sql`
          select ${RECORD_COLUMNS} from ${auditRecords} where ${and(scope, gt(auditRecords.seq, lastSeq))} order by seq limit ${BATCH}`));
        for (const r of records) {
          const f = fieldsOf(r);
          chunk += format === 'csv' ? CSV_COLUMNS.map((c) => csvField(f[c])).join(',') + '\r\n' : JSON.stringify({ type: 'record', ...f }) + '\n';
        }
        rows = records;
      }
      if (rows.length > 0) {
        for (const r of rows) digest.update(r.current_hash);
        firstSeq ??= Number(rows[0]!.seq);
        count += rows.length;
        lastSeq = Number(rows[rows.length - 1]!.seq);
        controller.enqueue(Buffer.from(chunk, 'utf8'));
      }
      if (copied ? rows.length === 0 : rows.length < BATCH) {
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

/** The chain fields as selected from audit_records, created_at formatted by the server exactly as toISOString(). */
const RECORD_COLUMNS = sql.raw(`chain_id, seq, previous_hash, id, organization_id, action, resource_type, resource_id, user_id, actor_type, details,
  ip_address, user_agent, request_id, ${isoTimestampSql('created_at')} as created_at, current_hash`);

const fieldsOf = (r: RawAuditRow) => ({
  chain_id: r.chain_id, seq: Number(r.seq), previous_hash: r.previous_hash, id: r.id, organization_id: r.organization_id, action: r.action,
  resource_type: r.resource_type, resource_id: r.resource_id, user_id: r.user_id, actor_type: r.actor_type, details: r.details,
  ip_address: r.ip_address, user_agent: r.user_agent, request_id: r.request_id, created_at: r.created_at, current_hash: r.current_hash,
});

/** A record's NDJSON line, written by PostgreSQL with the same keys in the same order as the row path. */
const NDJSON_LINE = sql.raw(
  recordJsonSql(
    ['chain_id', 'seq', 'previous_hash', 'id', 'organization_id', 'action', 'resource_type', 'resource_id', 'user_id', 'actor_type', 'details',
      'ip_address', 'user_agent', 'request_id', 'created_at', 'current_hash'],
    { leading: '"type":"record",' },
  ),
);

const HASH_KEY = '"current_hash":';

/**
 * Streams record lines out of one COPY, chunk by chunk: no per-row decoding, so memory stays flat and the
 * work is PostgreSQL's. COPY's text format doubles backslashes (the only escape a JSON line can need: it has
 * no raw control characters), which is undone here. Yields each run of complete lines with the seq and
 * current_hash of every record in it (for the manifest's digest and range).
 */
async function* copyNdjson(copyOut: NonNullable<Database['copyOut']>, select: SQL) {
  const bytes = copyOut(new PgDialect({ casing: 'snake_case' }).sqlToQuery(select.inlineParams()).sql);
  let partial: Buffer | undefined;
  for await (const piece of bytes) {
    const data = partial ? Buffer.concat([partial, piece]) : piece;
    const end = data.lastIndexOf(0x0a) + 1;
    partial = end < data.length ? Buffer.from(data.subarray(end)) : undefined;
    if (end === 0) continue;
    let chunk = data.toString('utf8', 0, end);
    if (chunk.includes('\\')) chunk = chunk.replaceAll('\\\\', '\\');
    const rows: { seq: number; current_hash: string }[] = [];
    for (let start = 0; start < chunk.length; ) {
      const stop = chunk.indexOf('\n', start);
      const hashAt = chunk.lastIndexOf(HASH_KEY, stop);
      const seqAt = chunk.indexOf(',"seq":', start) + 7;
      rows.push({ seq: Number(chunk.slice(seqAt, chunk.indexOf(',', seqAt))), current_hash: JSON.parse(chunk.slice(hashAt + HASH_KEY.length, stop - 1)) as string });
      start = stop + 1;
    }
    yield { chunk, rows };
  }
  if (partial && partial.length > 0) throw new Error('audit export: COPY ended inside a line');
}
