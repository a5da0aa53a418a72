/**
 * Seeds one long audit chain for bench/audit.ts, fast but faithfully: every record is hashed here exactly as
 * appendAudit would hash it (hashAuditRecord over hashedFieldsOf, previous_hash links from GENESIS_HASH),
 * rows go in with multi-row INSERTs (one in flight while the next batch is hashed), the head row is set,
 * and a checkpoint is signed every AUDIT_CHECKPOINT_EVERY records with the deps' signer (writeCheckpoint).
 */
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { eq, sql as dsql } from 'drizzle-orm';
import type postgres from 'postgres';
import { auditCheckpoints, type AuditRecordRow } from '../src/db/schema/audit.js';
import { chainOf, hashedFieldsOf, writeCheckpoint } from '../src/domains/audit/chain.js';
import type { Deps } from '../src/deps.js';
import { canonicalJson, GENESIS_HASH, hashAuditRecord } from '../src/lib/audit/canonical.js';
import { uuidV7Generator } from '../src/lib/ids.js';
import type { OrgAdmin } from './audit-common.js';

const int = (n: number) => Math.round(n).toLocaleString('en-US');

const SEED_COLUMNS = [
  'id', 'chain_id', 'seq', 'organization_id', 'action', 'resource_type', 'resource_id', 'user_id', 'actor_type',
  'details', 'ip_address', 'user_agent', 'request_id', 'created_at', 'previous_hash', 'current_hash',
] as const;

const USER_AGENTS = [
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36',
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15',
  'budctl/1.4.2 (linux; amd64)',
];
const ROLES_CYCLE = ['developer', 'tester', 'devops', 'admin'] as const;

export interface SeedOptions {
  /** Rows per multi-row INSERT (16 parameters a row, so at most 4062). */
  batch: number;
  /** Progress lines. */
  log: (line: string) => void;
  /** Polled between batches; true aborts the seeding. */
  stopped?: () => boolean;
}

/**
 * One chain of `n` records for `who`, computed here exactly as appendAudit would (hashAuditRecord over
 * hashedFieldsOf, previous_hash links from GENESIS_HASH), inserted in multi-row INSERTs with one insert
 * in flight while the next batch is hashed, checkpoints signed every `every` records by writeCheckpoint.
 */
export async function seedChain(deps: Deps, raw: postgres.Sql, who: OrgAdmin, n: number, opts: SeedOptions) {
  const { log: phase } = opts;
  const chainId = chainOf(who.organizationId);
  const every = deps.config.audit.checkpointEvery;
  const spacingMs = 250;
  const base = Date.now() - (n + 10) * spacingMs;
  let nowMs = base;
  const ids = uuidV7Generator({ now: () => new Date(nowMs) });
  const actors = Array.from({ length: 40 }, () => ids.uuid());
  actors[0] = who.adminId;
  const started = performance.now();
  let previousHash = GENESIS_HASH;
  let inFlight: Promise<unknown> | undefined;
  const checkpointHeads: { seq: number; hash: string }[] = [];
  let hashSeconds = 0;
  let nextReport = Math.min(100_000, n);

  for (let first = 1; first <= n; first += opts.batch) {
    const last = Math.min(n, first + opts.batch - 1);
    const t0 = performance.now();
    const rows: Record<(typeof SEED_COLUMNS)[number], unknown>[] = [];
    for (let seq = first; seq <= last; seq++) {
      nowMs = base + seq * spacingMs;
      const userId = actors[seq % actors.length]!;
      const kind = seq % 10;
      let action: AuditRecordRow['action'];
      let resourceType: AuditRecordRow['resourceType'];
      let resourceId: string | null;
      let details: Record<string, unknown>;
      if (kind < 4) {
        action = 'login';
        resourceType = 'session';
        resourceId = null;
        details = { family_id: randomUUID() };
      } else if (kind < 7) {
        action = 'create';
        resourceType = 'user';
        resourceId = ids.uuid();
        details = { after: { email: `user-${seq}@example.com`, name: `User ${seq}`, role: ROLES_CYCLE[seq % 4]!, status: seq % 3 ? 'active' : 'invited', organization_id: who.organizationId } };
      } else if (kind < 9) {
        action = 'update';
        resourceType = 'user';
        resourceId = actors[(seq * 7) % actors.length]!;
        details = { changes: { role: { old: 'developer', new: 'tester' }, name: { old: `User ${seq}`, new: `User ${seq} (renamed)` } } };
      } else {
        action = 'token_refresh';
        resourceType = 'session';
        resourceId = null;
        details = { family_id: randomUUID() };
      }
      const row: AuditRecordRow = {
        id: ids.uuid(),
        chainId,
        seq,
        organizationId: who.organizationId,
        action,
        resourceType,
        resourceId,
        userId,
        actorType: 'user',
        details,
        ipAddress: `10.${(seq >> 16) & 255}.${(seq >> 8) & 255}.${seq & 255}`,
        userAgent: USER_AGENTS[seq % USER_AGENTS.length]!,
        requestId: randomUUID(),
        createdAt: new Date(nowMs),
        previousHash,
        currentHash: '',
      };
      row.currentHash = hashAuditRecord(hashedFieldsOf(row));
      previousHash = row.currentHash;
      if (seq % every === 0) checkpointHeads.push({ seq, hash: row.currentHash });
      rows.push({
        id: row.id,
        chain_id: row.chainId,
        seq: row.seq,
        organization_id: row.organizationId,
        action: row.action,
        resource_type: row.resourceType,
        resource_id: row.resourceId,
        user_id: row.userId,
        actor_type: row.actorType,
        // audit_records.details holds the canonical text the hash covers, as the chainer writes it: postgres.js
        // sends JSON.stringify of the value, which for an object with its keys in canonical order is that text.
        details: JSON.parse(canonicalJson(row.details)) as Record<string, unknown>,
        ip_address: row.ipAddress,
        user_agent: row.userAgent,
        request_id: row.requestId,
        created_at: row.createdAt,
        previous_hash: row.previousHash,
        current_hash: row.currentHash,
      });
    }
    hashSeconds += (performance.now() - t0) / 1000;
    await inFlight;
    if (opts.stopped?.()) throw new Error('interrupted');
    inFlight = raw`insert into audit_records ${raw(rows as never, ...SEED_COLUMNS)}`;
    if (last >= nextReport || last === n) {
      const s = (performance.now() - started) / 1000;
      phase(`seed: ${int(last).padStart(9)} / ${int(n)} records  ${int(last / s)} records/s`);
      nextReport += 100_000;
    }
  }
  await inFlight;
  await raw`insert into audit_chain_heads (chain_id, seq, hash) values (${chainId}, ${n}, ${previousHash})
            on conflict (chain_id) do update set seq = excluded.seq, hash = excluded.hash`;
  const insertSeconds = (performance.now() - started) / 1000;

  phase(`seed: signing and writing ${int(checkpointHeads.length)} checkpoints (writeCheckpoint)`);
  const cpStarted = performance.now();
  const queue = [...checkpointHeads];
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      for (let h = queue.shift(); h; h = queue.shift()) {
        const written = await writeCheckpoint(deps.db, deps.auditSigner, { chainId, seq: h.seq, hash: h.hash }, deps.clock.now());
        if (!written) throw new Error(`checkpoint ${h.seq} was not written`);
      }
    }),
  );
  const [cp] = await deps.db.select({ n: dsql<number>`count(*)::int` }).from(auditCheckpoints).where(eq(auditCheckpoints.chainId, chainId));
  if (cp?.n !== checkpointHeads.length) throw new Error(`expected ${checkpointHeads.length} checkpoints, found ${cp?.n}`);
  const checkpointSeconds = (performance.now() - cpStarted) / 1000;

  phase('seed: VACUUM ANALYZE audit_records, audit_checkpoints, then CHECKPOINT (steady state: hint bits set, visibility map, no flush of the seed still running under the measurements)');
  const vacStarted = performance.now();
  await raw`vacuum analyze audit_records`;
  await raw`vacuum analyze audit_checkpoints`;
  await raw`checkpoint`;
  const [size] = await raw<{ bytes: string }[]>`select pg_total_relation_size('audit_records')::text as bytes`;
  const vacuumSeconds = (performance.now() - vacStarted) / 1000;
  phase(
    `seed: done: ${int(n)} records in ${insertSeconds.toFixed(1)}s (${int(n / insertSeconds)} records/s; hashing ${hashSeconds.toFixed(1)}s), ` +
      `checkpoints ${checkpointSeconds.toFixed(1)}s, vacuum + CHECKPOINT ${vacuumSeconds.toFixed(1)}s, audit_records ${(Number(size?.bytes ?? 0) / 2 ** 20).toFixed(0)} MB`,
  );
  return { headHash: previousHash, checkpoints: checkpointHeads.length };
}
