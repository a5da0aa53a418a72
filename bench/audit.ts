/**
 * `npx tsx bench/audit.ts`: audit-trail benchmarks on PostgreSQL, through the service's own code.
 *
 *   1. Audited vs unaudited writes/s, BENCH_CLIENTS (32) concurrent clients over the deps' postgres.js pool,
 *      on 1 organisation and on BENCH_ORGS (16). A write is one transaction inserting a users row (as
 *      createUser does, through inTransaction, without the password hash) and, audited, `appendAudit` with createUser's entry;
 *      the service's chainer chains those records meanwhile, and what is still pending when the clients stop
 *      is chained before the clock stops.
 *      Variants run for BENCH_DURATION seconds each, interleaved over BENCH_ROUNDS rounds (ABBA order).
 *      Afterwards every chain must be gapless (seq 1..n, n == head == committed audited writes) and pass
 *      verifyChain.
 *   2. verifyChain over one chain of BENCH_AUDIT_RECORDS (1,000,000) records, seeded directly (hashes
 *      computed here with hashAuditRecord/hashedFieldsOf, multi-row INSERTs, signed checkpoints every
 *      AUDIT_CHECKPOINT_EVERY (1000) records via writeCheckpoint), in a child process (bench/audit-worker.ts)
 *      so its peak RSS is its own.
 *   3. exportAudit NDJSON of the same chain, consumed to nowhere, in another child process; checks the
 *      output is complete (every record line, the manifest last) without holding it.
 *
 * A fresh database budapp_audit_bench_<random> is created and dropped at the end (also on failure, Ctrl-C).
 *
 * Env (all optional):
 *   BENCH_DATABASE_URL   admin connection (default postgres://postgres@127.0.0.1:5432/postgres)
 *   BENCH_DURATION       measured seconds per write variant per round (default 8)
 *   BENCH_WARMUP         warm-up seconds before each write variant (default 1)
 *   BENCH_ROUNDS         interleaved rounds of the four write variants (default 2)
 *   BENCH_CLIENTS        concurrent writers (default 32)
 *   BENCH_ORGS           organisations for the multi-organisation write variant (default 16)
 *   BENCH_POOL_SIZE      DATABASE_POOL_SIZE of the writers' deps (default 32)
 *   BENCH_WRITE_SHAPE    insert (default): insert the user + audit; create-user: also createUser's two
 *                        look-ups (organisation exists, e-mail free) inside the transaction
 *   BENCH_AUDIT_RECORDS  length of the chain for verify/export (default 1000000)
 *   BENCH_SEED_BATCH     rows per INSERT while seeding (default 2000)
 *   BENCH_PARTS          comma list among writes,verify,export (default all)
 *   BENCH_CPU_PROF       a directory: run the verify/export children with --cpu-prof, profiles written there
 *   BENCH_ENFORCE        1: exit 1 when a target is missed (a correctness failure always exits 1)
 *   BENCH_WAIT_QUIET     seconds to wait at start for other processes to leave the CPU alone (default 60)
 *   BENCH_KEEP_DB        1: keep the bench database and its data dir at the end, for EXPLAIN and experiments;
 *                        the run prints the environment that runs the verify/export child on them again
 *                        (`BENCH_AUDIT_MODE=verify … npx tsx bench/audit-worker.ts`)
 *   BENCH_RETRIES        measure a phase again when other processes disturbed it, up to this often (default 2)
 *
 * Every measured phase also reports where the machine's CPU went (bench, PostgreSQL, other processes);
 * a phase where other processes took more than 15% of a core is measured again (BENCH_RETRIES), and listed
 * as disturbed at the end if it stays so.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { build as esbuild } from 'esbuild';
import postgres from 'postgres';
import { users } from '../src/db/schema/users.js';
import { organizations } from '../src/db/schema/organizations.js';
import { appendAudit, chainOf } from '../src/domains/audit/chain.js';
import { verifyChain } from '../src/domains/audit/service.js';
import { userSnapshot } from '../src/domains/users/service.js';
import { closeDeps, type Deps } from '../src/deps.js';
import { inTransaction } from '../src/domains/service-ctx.js';
import { eq, sql as dsql } from 'drizzle-orm';
import { adminCtx, benchDeps, RESULT_PREFIX, type OrgAdmin } from './audit-common.js';
import { seedChain } from './audit-seed.js';
import { createCleanups, envNumber, formatCpu, startCpuMonitor, startScriptFlags, type CpuShare } from './common.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));


const settings = {
  adminUrl: process.env.BENCH_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres',
  duration: envNumber('BENCH_DURATION', 8, 1),
  warmup: envNumber('BENCH_WARMUP', 1, 0),
  rounds: Math.floor(envNumber('BENCH_ROUNDS', 2, 1)),
  clients: Math.floor(envNumber('BENCH_CLIENTS', 32, 1)),
  orgs: Math.floor(envNumber('BENCH_ORGS', 16, 2)),
  poolSize: Math.floor(envNumber('BENCH_POOL_SIZE', 32, 1)),
  writeShape: (process.env.BENCH_WRITE_SHAPE ?? 'insert') as 'insert' | 'create-user',
  records: Math.floor(envNumber('BENCH_AUDIT_RECORDS', 1_000_000, 1)),
  seedBatch: Math.floor(envNumber('BENCH_SEED_BATCH', 2000, 1)),
  parts: new Set((process.env.BENCH_PARTS ?? 'writes,verify,export').split(',').map((s) => s.trim()).filter(Boolean)),
  cpuProfDir: process.env.BENCH_CPU_PROF ? resolve(process.env.BENCH_CPU_PROF) : undefined,
  enforce: process.env.BENCH_ENFORCE === '1' || process.env.BENCH_ENFORCE === 'true',
  waitQuiet: envNumber('BENCH_WAIT_QUIET', 60, 0),
  retries: Math.floor(envNumber('BENCH_RETRIES', 2, 0)),
};
if (settings.writeShape !== 'insert' && settings.writeShape !== 'create-user') throw new Error('BENCH_WRITE_SHAPE must be insert or create-user');
for (const p of settings.parts) if (!['writes', 'verify', 'export'].includes(p)) throw new Error(`BENCH_PARTS: unknown part ${p}`);
if (settings.seedBatch * 16 > 65_000) throw new Error('BENCH_SEED_BATCH too large: at most 4062 rows (16 parameters a row)');

const TARGETS = { writeRatio: 0.7, verifyRate: 200_000, exportRate: 100_000, rssMb: 200 };

// ---------------------------------------------------------------------------------------------- output

const startedAt = Date.now();
const elapsed = () => `${((Date.now() - startedAt) / 1000).toFixed(1).padStart(6)}s`;
const phase = (msg: string) => process.stdout.write(`[audit ${elapsed()}] ${msg}\n`);
const int = (n: number) => Math.round(n).toLocaleString('en-US');

// --------------------------------------------------------------------------------------------- cleanup

const { onCleanup, cleanup } = createCleanups('audit');


let interrupted = false;
const children = new Set<ChildProcess>();
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (interrupted) return;
    interrupted = true;
    process.stderr.write(`\n[audit] ${signal} received: stopping, dropping the bench database\n`);
    for (const c of children) c.kill('SIGTERM');
    void cleanup().finally(() => process.exit(130));
  });
}

class BenchFailure extends Error {
  override name = 'BenchFailure';
}

// ------------------------------------------------------------------------------------ interference

const CORES = os.cpus().length;
/** Phases during which processes other than the bench and PostgreSQL used noticeable CPU. */
const disturbed: string[] = [];
const DISTURBED_PCT = 15;

/**
 * Runs one measurement while watching the CPU. When other processes took more than DISTURBED_PCT of a core,
 * waits for a quiet machine and measures again, up to BENCH_RETRIES times; a measurement that stays
 * disturbed is kept and listed at the end.
 */
async function measured<T>(label: string, run: () => Promise<T>, childSeconds: (t: T) => number = () => 0): Promise<{ result: T; cpu: CpuShare }> {
  for (let attempt = 1; ; attempt++) {
    const monitor = startCpuMonitor(CORES);
    const result = await run();
    const cpu = monitor.stop(childSeconds(result));
    if (cpu.other <= DISTURBED_PCT) return { result, cpu };
    if (attempt > settings.retries) {
      disturbed.push(`${label}: other processes used ${cpu.other.toFixed(0)}% CPU (${attempt} attempt${attempt > 1 ? 's' : ''})`);
      return { result, cpu };
    }
    phase(`${label}: disturbed (other processes used ${cpu.other.toFixed(0)}% CPU), measuring again (attempt ${attempt + 1} of ${settings.retries + 1})`);
    await waitForQuiet(30);
  }
}

// ------------------------------------------------------------------------------------------ machine info

/** Samples other processes' CPU for 2 s at a time until it is under DISTURBED_PCT or BENCH_WAIT_QUIET runs out. */
async function waitForQuiet(maxSeconds: number): Promise<CpuShare> {
  const deadline = Date.now() + maxSeconds * 1000;
  for (;;) {
    const m = startCpuMonitor(CORES);
    await new Promise((r) => setTimeout(r, 2_000));
    const share = m.stop();
    if (share.other <= DISTURBED_PCT || Date.now() >= deadline || interrupted) return share;
    phase(`waiting for a quiet machine: other processes use ${share.other.toFixed(0)}% CPU (up to ${Math.ceil((deadline - Date.now()) / 1000)} s more, BENCH_WAIT_QUIET)`);
  }
}

async function header(admin: postgres.Sql) {
  const cpus = os.cpus();
  const [v] = await admin<{ version: string }[]>`select version()`;
  const settingsRows = await admin<{ name: string; setting: string; unit: string | null }[]>`
    select name, setting, unit from pg_settings
    where name in ('shared_buffers', 'synchronous_commit', 'fsync', 'max_connections') order by name`;
  const pg = settingsRows.map((r) => `${r.name}=${r.setting}${r.unit ? ` ${r.unit}` : ''}`).join(', ');
  const background = await waitForQuiet(settings.waitQuiet);
  const lines = [
    'budapp audit-trail benchmark',
    `  date        ${new Date().toISOString()}`,
    `  cpu         ${cpus[0]?.model.trim() ?? 'unknown'} × ${cpus.length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GB RAM, ${os.type()} ${os.release()}`,
    `  node        ${process.version}`,
    `  background  ${background.other.toFixed(0)}% of a core used by other processes over 2 s before the run${background.other > DISTURBED_PCT ? ' (NOT QUIET)' : ''}`,
    `  postgres    ${v?.version.split(' on ')[0] ?? '?'} (${pg})`,
    `  settings    writes: ${settings.clients} clients, pool ${settings.poolSize}, ${settings.duration}s × ${settings.rounds} rounds (warm-up ${settings.warmup}s), 1 and ${settings.orgs} orgs, shape ${settings.writeShape}`,
    `              verify/export: ${int(settings.records)} records, checkpoints every 1000`,
  ];
  process.stdout.write(`${lines.join('\n')}\n\n`);
}

// --------------------------------------------------------------------------------------------- fixtures

/** An organisation and its admin, inserted directly (the bench measures audit appends, not bootstrap). */
async function createOrgWithAdmin(deps: Deps, name: string): Promise<OrgAdmin> {
  const now = deps.clock.now();
  const organizationId = deps.ids.uuid();
  const adminId = deps.ids.uuid();
  await deps.db.insert(organizations).values({ id: organizationId, name, createdAt: now, updatedAt: now });
  await deps.db.insert(users).values({
    id: adminId,
    email: `admin-${organizationId}@bench.test`,
    name: `${name} admin`,
    organizationId,
    role: 'admin',
    status: 'active',
    createdAt: now,
    updatedAt: now,
  });
  return { organizationId, adminId };
}

// ---------------------------------------------------------------------------------------- 1. writes/s

let emailCounter = 0;
const runTag = randomBytes(3).toString('hex');

async function oneWrite(deps: Deps, who: OrgAdmin, audited: boolean): Promise<void> {
  const ctx = adminCtx(deps, who);
  const email = `u${runTag}-${++emailCounter}@bench.test`;
  await inTransaction(ctx, async (tx) => {
    const { db } = tx;
    if (settings.writeShape === 'create-user') {
      const [org] = await db.select({ id: organizations.id }).from(organizations).where(eq(organizations.id, who.organizationId));
      if (!org) throw new Error('organisation missing');
      const [clash] = await db.select({ id: users.id }).from(users).where(dsql`lower(${users.email}) = ${email}`);
      if (clash) throw new Error('email clash');
    }
    const now = ctx.clock.now();
    const [row] = await db
      .insert(users)
      .values({ id: ctx.ids.uuid(), email, name: `Bench user ${emailCounter}`, organizationId: who.organizationId, role: 'developer', status: 'invited', passwordHash: null, createdAt: now, updatedAt: now })
      .returning();
    if (audited) {
      await appendAudit(tx, {
        action: 'create',
        resourceType: 'user',
        resourceId: row!.id,
        organizationId: row!.organizationId,
        details: { after: userSnapshot(row!) },
      });
    }
  });
}

interface WriteRun {
  count: number;
  /** The measured window plus the time to chain what was still pending at its end. */
  seconds: number;
  /** Records still pending when the clients stopped. */
  backlog: number;
  latencies: number[];
  cpu?: CpuShare;
}

/** Committed audited writes per organisation, warm-ups included: each chain must be exactly this long. */
const auditedCommits = new Map<string, number>();
const writeErrors: unknown[] = [];

async function runWrites(deps: Deps, targets: OrgAdmin[], audited: boolean, seconds: number): Promise<WriteRun> {
  const start = performance.now();
  const end = start + seconds * 1000;
  const latencies: number[] = [];
  let count = 0;
  await Promise.all(
    Array.from({ length: settings.clients }, async (_, i) => {
      const who = targets[i % targets.length]!;
      while (!interrupted && performance.now() < end) {
        const t0 = performance.now();
        try {
          await oneWrite(deps, who, audited);
        } catch (err) {
          writeErrors.push(err);
          if (writeErrors.length > 20) throw err;
          continue;
        }
        if (audited) auditedCommits.set(who.organizationId, (auditedCommits.get(who.organizationId) ?? 0) + 1);
        const t1 = performance.now();
        if (t1 <= end) {
          count++;
          latencies.push(t1 - t0);
        }
      }
    }),
  );
  if (interrupted) throw new BenchFailure('interrupted');
  // Records are chained just after their commit; what is still pending when the clients stop is chained
  // now and its time counted, so the audited figure pays for all of its chaining.
  const backlog = audited ? await deps.auditChainer.chainAll() : 0;
  return { count, seconds: Math.max(seconds, (performance.now() - start) / 1000), latencies, backlog };
}

const percentile = (sorted: number[], p: number) => (sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!);

interface VariantResult {
  label: string;
  writesPerSecond: number;
  p50: number;
  p99: number;
  perRound: number[];
  /** Mean CPU shares over the measured runs. */
  cpu: { self: number; postgres: number };
  /** CPU milliseconds per committed write: this process (node) and the PostgreSQL server. */
  msPerWrite: { node: number; postgres: number };
}

async function benchWrites(deps: Deps) {
  phase(`writes: creating 1 + ${settings.orgs} organisations with an admin each`);
  const single = [await createOrgWithAdmin(deps, `Bench single org ${runTag}`)];
  const many: OrgAdmin[] = [];
  for (let i = 0; i < settings.orgs; i++) many.push(await createOrgWithAdmin(deps, `Bench org ${i + 1} ${runTag}`));

  type Key = 'u1' | 'a1' | 'uN' | 'aN';
  const variants: Record<Key, { label: string; targets: OrgAdmin[]; audited: boolean }> = {
    u1: { label: 'unaudited, 1 org', targets: single, audited: false },
    a1: { label: 'audited,   1 org', targets: single, audited: true },
    uN: { label: `unaudited, ${settings.orgs} orgs`, targets: many, audited: false },
    aN: { label: `audited,   ${settings.orgs} orgs`, targets: many, audited: true },
  };
  const order: Key[] = ['u1', 'a1', 'uN', 'aN'];
  const runs: Record<Key, WriteRun[]> = { u1: [], a1: [], uN: [], aN: [] };
  for (let round = 1; round <= settings.rounds; round++) {
    const keys = round % 2 === 1 ? order : [...order].reverse();
    for (const k of keys) {
      const v = variants[k];
      if (settings.warmup > 0) await runWrites(deps, v.targets, v.audited, settings.warmup);
      const { result: r, cpu } = await measured(`writes round ${round} ${v.label.replace(/ +/g, ' ')}`, () => runWrites(deps, v.targets, v.audited, settings.duration));
      r.cpu = cpu;
      runs[k].push(r);
      const sorted = [...r.latencies].sort((a, b) => a - b);
      phase(
        `writes round ${round}/${settings.rounds}  ${v.label.padEnd(20)} ${int(r.count / r.seconds).padStart(7)} writes/s   p50 ${percentile(sorted, 50).toFixed(1).padStart(6)} ms  p99 ${percentile(sorted, 99).toFixed(1).padStart(7)} ms   ${formatCpu(r.cpu)}${v.audited ? `   pending at the end ${r.backlog}` : ''}`,
      );
    }
  }
  if (writeErrors.length > 0) {
    const first = writeErrors[0];
    throw new BenchFailure(`${writeErrors.length} write transaction(s) failed; first: ${first instanceof Error ? (first.stack ?? first.message) : String(first)}`);
  }

  const summarise = (k: Key): VariantResult => {
    const rs = runs[k];
    const total = rs.reduce((s, r) => s + r.count, 0);
    const secs = rs.reduce((s, r) => s + r.seconds, 0);
    const lat = rs.flatMap((r) => r.latencies).sort((a, b) => a - b);
    const mean = (f: (c: CpuShare) => number) => rs.reduce((s, r) => s + (r.cpu ? f(r.cpu) : 0), 0) / rs.length;
    return {
      label: variants[k].label,
      writesPerSecond: total / secs,
      p50: percentile(lat, 50),
      p99: percentile(lat, 99),
      perRound: rs.map((r) => r.count / r.seconds),
      cpu: { self: mean((c) => c.self), postgres: mean((c) => c.postgres) },
      msPerWrite: {
        node: (10 * rs.reduce((s, r) => s + (r.cpu ? r.cpu.self * r.cpu.seconds : 0), 0)) / total,
        postgres: (10 * rs.reduce((s, r) => s + (r.cpu ? r.cpu.postgres * r.cpu.seconds : 0), 0)) / total,
      },
    };
  };
  const out = { u1: summarise('u1'), a1: summarise('a1'), uN: summarise('uN'), aN: summarise('aN') };

  // Every chain gapless, as long as the number of audited commits, and intact.
  phase('writes: checking every chain is gapless (seq 1..n, n == head == audited commits) and verifies');
  const all = [...single, ...many];
  const sqlRows = await deps.db.execute<{ chain_id: string; n: string; min_seq: string | null; max_seq: string | null; head_seq: string | null }>(dsql`
    select h.chain_id, count(r.seq) as n, min(r.seq) as min_seq, max(r.seq) as max_seq, h.seq as head_seq
    from audit_chain_heads h left join audit_records r on r.chain_id = h.chain_id
    group by h.chain_id, h.seq`);
  const stats = new Map((sqlRows as unknown as { chain_id: string; n: string; min_seq: string | null; max_seq: string | null; head_seq: string | null }[]).map((r) => [r.chain_id, r]));
  const problems: string[] = [];
  let chainsChecked = 0;
  let recordsChecked = 0;
  for (const who of all) {
    const expected = auditedCommits.get(who.organizationId) ?? 0;
    const s = stats.get(chainOf(who.organizationId));
    const n = Number(s?.n ?? 0);
    const minSeq = s?.min_seq == null ? null : Number(s.min_seq);
    const maxSeq = s?.max_seq == null ? null : Number(s.max_seq);
    const headSeq = s?.head_seq == null ? 0 : Number(s.head_seq);
    if (n !== expected || headSeq !== expected || (n > 0 && (minSeq !== 1 || maxSeq !== n))) {
      problems.push(`${chainOf(who.organizationId)}: ${n} records, seq ${minSeq}..${maxSeq}, head ${headSeq}, audited commits ${expected}`);
      continue;
    }
    const v = await verifyChain(adminCtx(deps, who), {});
    if (!v.ok || v.checked !== expected) problems.push(`${v.chain_id}: verifyChain ok=${v.ok} checked=${v.checked}/${expected} first failure ${JSON.stringify(v.first_failure)}`);
    chainsChecked++;
    recordsChecked += v.checked;
  }
  if (problems.length > 0) throw new BenchFailure(`audit chains are not gapless/intact after the write benchmark:\n  ${problems.join('\n  ')}`);
  phase(`writes: ${chainsChecked} chains gapless and verified (${int(recordsChecked)} records)`);
  return out;
}

// ------------------------------------------------------------------------------------------ 3. children

interface WorkerResult {
  mode: string;
  seconds: number;
  headBefore: number;
  recordsPerSecond: number;
  maxRssMb: number;
  rssBeforeMb: number;
  cpuUserSeconds: number;
  cpuSystemSeconds: number;
  /** CPU the operation itself used in the child (start-up excluded), and records per such CPU-second. */
  opCpuSeconds: number;
  recordsPerCpuSecond: number;
  [k: string]: unknown;
}

/**
 * The verify/export child runs as the service does in production: bundled by esbuild (as `npm run build`
 * bundles src/main.ts) and started on plain node with the start script's flags, so its memory is not the tsx
 * loader's.
 */
let workerBundle: string | undefined;
async function buildWorker(): Promise<string> {
  if (workerBundle) return workerBundle;
  const outfile = join(ROOT, 'dist/bench/audit-worker.mjs');
  await esbuild({ entryPoints: [join(ROOT, 'bench/audit-worker.ts')], bundle: true, platform: 'node', format: 'esm', packages: 'external', outfile, logLevel: 'warning' });
  return (workerBundle = outfile);
}

async function runWorker(mode: 'verify' | 'export', env: Record<string, string>): Promise<WorkerResult> {
  const script = await buildWorker();
  const nodeArgs = startScriptFlags(ROOT);
  if (settings.cpuProfDir) {
    const dir = join(settings.cpuProfDir, mode);
    mkdirSync(dir, { recursive: true });
    nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${dir}`);
  }
  const proc = spawn(process.execPath, [...nodeArgs, script], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? os.tmpdir(), BENCH_AUDIT_MODE: mode, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(proc);
  let result: WorkerResult | undefined;
  const tail: string[] = [];
  let stdoutBuf = '';
  proc.stdout!.on('data', (chunk: Buffer) => {
    stdoutBuf += chunk.toString('utf8');
    let nl: number;
    while ((nl = stdoutBuf.indexOf('\n')) !== -1) {
      const line = stdoutBuf.slice(0, nl);
      stdoutBuf = stdoutBuf.slice(nl + 1);
      if (line.startsWith(RESULT_PREFIX)) result = JSON.parse(line.slice(RESULT_PREFIX.length)) as WorkerResult;
      else if (line.trim()) phase(`  [${mode}] ${line}`);
    }
  });
  proc.stderr!.on('data', (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (!line.trim()) continue;
      tail.push(line);
      if (tail.length > 40) tail.shift();
      phase(`  [${mode}] ${line}`);
    }
  });
  return new Promise((resolveRun, reject) => {
    proc.once('exit', (code, signal) => {
      children.delete(proc);
      if (code === 0 && result) resolveRun(result);
      else reject(new BenchFailure(`${mode} worker exited with ${signal ?? code} and no result:\n  ${tail.join('\n  ')}`));
    });
  });
}

// ------------------------------------------------------------------------------------------------ main

interface Row {
  metric: string;
  value: string;
  target: string;
  met: string;
}

async function main() {
  const admin = postgres(settings.adminUrl, { max: 1, onnotice: () => {} });
  onCleanup('close admin connection', () => admin.end({ timeout: 5 }));
  await header(admin);

  const dbName = `budapp_audit_bench_${randomBytes(4).toString('hex')}`;
  await admin.unsafe(`create database "${dbName}"`);
  phase(`created database ${dbName}`);
  onCleanup(`drop database ${dbName}`, async () => {
    for (const c of children) c.kill('SIGKILL');
    if (process.env.BENCH_KEEP_DB === '1') {
      phase(`kept database ${dbName} (BENCH_KEEP_DB)`);
      return;
    }
    await admin.unsafe(`drop database if exists "${dbName}" with (force)`);
    phase(`dropped database ${dbName}`);
  });
  const url = new URL(settings.adminUrl);
  url.pathname = `/${dbName}`;
  const databaseUrl = url.toString();

  const dataDir = mkdtempSync(join(os.tmpdir(), 'budapp-audit-bench-'));
  onCleanup('remove data dir', () => {
    if (process.env.BENCH_KEEP_DB !== '1') rmSync(dataDir, { recursive: true, force: true });
  });

  const deps = await benchDeps({ databaseUrl, dataDir, poolSize: settings.poolSize });
  onCleanup('close deps', () => closeDeps(deps));
  await deps.database.migrate();
  phase(`migrated; audit signer ${deps.auditSigner.keyId}, checkpoint every ${deps.config.audit.checkpointEvery}`);

  const rows: Row[] = [];
  let missed = 0;
  const judge = (ok: boolean) => {
    if (!ok) missed++;
    return ok ? 'yes' : 'NO';
  };

  if (settings.parts.has('writes')) {
    const w = await benchWrites(deps);
    const r1 = w.a1.writesPerSecond / w.u1.writesPerSecond;
    const rN = w.aN.writesPerSecond / w.uN.writesPerSecond;
    const fmt = (v: VariantResult) =>
      `${int(v.writesPerSecond)} /s  (p50 ${v.p50.toFixed(1)} ms, p99 ${v.p99.toFixed(1)} ms; rounds ${v.perRound.map(int).join(', ')}; ` +
      `CPU/write node ${v.msPerWrite.node.toFixed(2)} + pg ${v.msPerWrite.postgres.toFixed(2)} ms)`;
    const costRatio = (u: VariantResult, a: VariantResult) => (u.msPerWrite.node + u.msPerWrite.postgres) / (a.msPerWrite.node + a.msPerWrite.postgres);
    rows.push(
      { metric: `writes, ${w.u1.label}`, value: fmt(w.u1), target: '', met: '' },
      { metric: `writes, ${w.a1.label}`, value: fmt(w.a1), target: '', met: '' },
      { metric: 'ratio audited/unaudited, 1 org', value: r1.toFixed(3), target: '(info)', met: '' },
      { metric: `writes, ${w.uN.label}`, value: fmt(w.uN), target: '', met: '' },
      { metric: `writes, ${w.aN.label}`, value: fmt(w.aN), target: '', met: '' },
      { metric: `ratio audited/unaudited, ${settings.orgs} orgs`, value: rN.toFixed(3), target: `>= ${TARGETS.writeRatio}`, met: judge(rN >= TARGETS.writeRatio) },
      {
        metric: `CPU cost ratio unaudited/audited, ${settings.orgs} orgs`,
        value: `${costRatio(w.uN, w.aN).toFixed(3)}  (the writes/s ratio to expect when CPU-bound; 1 org: ${costRatio(w.u1, w.a1).toFixed(3)})`,
        target: '(info)',
        met: '',
      },
    );
  }

  if (settings.parts.has('verify') || settings.parts.has('export')) {
    const n = settings.records;
    phase(`seed: one chain of ${int(n)} records`);
    const who = await createOrgWithAdmin(deps, `Bench verify org ${runTag}`);
    const raw = postgres(databaseUrl, { max: 2, onnotice: () => {} });
    onCleanup('close seeding connection', () => raw.end({ timeout: 5 }));
    const seedCpu = startCpuMonitor(CORES);
    const seeded = await seedChain(deps, raw, who, n, { batch: settings.seedBatch, log: phase, stopped: () => interrupted });
    await raw.end({ timeout: 5 });
    phase(`seed: ${formatCpu(seedCpu.stop())}`);
    const workerEnv = { DATABASE_URL: databaseUrl, DATA_DIR: dataDir, BENCH_ORG_ID: who.organizationId, BENCH_ADMIN_ID: who.adminId };
    if (process.env.BENCH_KEEP_DB === '1') {
      phase(`kept for experiments: ${Object.entries(workerEnv).map(([k, v]) => `${k}=${v}`).join(' ')}`);
    }

    if (settings.parts.has('verify')) {
      phase(`verify: verifyChain over ${int(n)} records in a child process`);
      const { result: v, cpu } = await measured('verify', async () => {
        const r = await runWorker('verify', workerEnv);
        // A repeated measurement also checks the audit_verify records that earlier attempts appended.
        if (r.ok !== true || r.headBefore < n || r.checked !== r.headBefore || (r.checkpointsChecked as number) < seeded.checkpoints) {
          throw new BenchFailure(
            `verifyChain did not pass: ok=${String(r.ok)} checked=${String(r.checked)}/${r.headBefore} (seeded ${n}) checkpoints ${String(r.checkpointsChecked)}/${seeded.checkpoints} first failure ${JSON.stringify(r.firstFailure)}`,
          );
        }
        return r;
      }, (r) => r.cpuUserSeconds + r.cpuSystemSeconds);
      phase(`verify: ok, checked ${int(n)} in ${v.seconds.toFixed(2)}s = ${int(v.recordsPerSecond)} records/s, peak RSS ${v.maxRssMb.toFixed(0)} MB; ${formatCpu(cpu)}`);
      rows.push(
        { metric: `verify ${int(n)} records: ok, checked`, value: `ok=${String(v.ok)}, checked ${int(v.checked as number)}, ${int(v.checkpointsChecked as number)} checkpoints`, target: `ok, >= ${int(n)}`, met: 'yes' },
        { metric: 'verify: records/s', value: `${int(v.recordsPerSecond)}  (${v.seconds.toFixed(2)} s; ${int(v.recordsPerCpuSecond)} records per CPU-second of the verifier process)`, target: `>= ${int(TARGETS.verifyRate)}`, met: judge(v.recordsPerSecond >= TARGETS.verifyRate) },
        { metric: 'verify: peak RSS', value: `${v.maxRssMb.toFixed(0)} MB  (${v.rssBeforeMb.toFixed(0)} MB before verifying)`, target: `<= ${TARGETS.rssMb} MB`, met: judge(v.maxRssMb <= TARGETS.rssMb) },
      );
    }

    if (settings.parts.has('export')) {
      phase(`export: exportAudit ndjson over ${int(n)} records in a child process`);
      const { result: e, cpu } = await measured('export', async () => {
        const r = await runWorker('export', workerEnv);
        // The chain holds the seeded records, the records earlier verify/export runs appended, then this export's own.
        const expected = r.headBefore + 1;
        const complete =
          r.recordLines === expected && r.lines === expected + 1 && r.manifestType === 'manifest' && r.manifestCount === expected && r.manifestLastSeq === expected && r.trailingPartialLine === false;
        if (!complete) throw new BenchFailure(`the export is incomplete: ${JSON.stringify(r)} (expected ${expected} record lines then the manifest)`);
        return r;
      }, (r) => r.cpuUserSeconds + r.cpuSystemSeconds);
      const priorAppends = e.headBefore - n;
      phase(`export: complete, ${int(e.recordLines as number)} record lines + manifest, ${((e.bytes as number) / 2 ** 20).toFixed(0)} MB in ${e.seconds.toFixed(2)}s = ${int(e.recordsPerSecond)} records/s, peak RSS ${e.maxRssMb.toFixed(0)} MB; ${formatCpu(cpu)}`);
      rows.push(
        {
          metric: 'export ndjson: complete',
          value: `${int(e.recordLines as number)} record lines (${int(n)} seeded + ${priorAppends} appended by the verify/export runs before + its own data_export) + manifest last, ${((e.bytes as number) / 2 ** 20).toFixed(0)} MB`,
          target: 'all + manifest',
          met: 'yes',
        },
        { metric: 'export: records/s', value: `${int(e.recordsPerSecond)}  (${e.seconds.toFixed(2)} s; ${int(e.recordsPerCpuSecond)} records per CPU-second of the exporting process)`, target: `>= ${int(TARGETS.exportRate)}`, met: judge(e.recordsPerSecond >= TARGETS.exportRate) },
        { metric: 'export: peak RSS', value: `${e.maxRssMb.toFixed(0)} MB  (${e.rssBeforeMb.toFixed(0)} MB before exporting)`, target: `<= ${TARGETS.rssMb} MB`, met: judge(e.maxRssMb <= TARGETS.rssMb) },
      );
    }
  }

  const widths = {
    metric: Math.max(6, ...rows.map((r) => r.metric.length)),
    value: Math.max(5, ...rows.map((r) => r.value.length)),
    target: Math.max(6, ...rows.map((r) => r.target.length)),
  };
  const line = (r: Row) => `${r.metric.padEnd(widths.metric)}  ${r.value.padEnd(widths.value)}  ${r.target.padEnd(widths.target)}  ${r.met}`.trimEnd();
  const rule = '-'.repeat(widths.metric + widths.value + widths.target + 11);
  process.stdout.write(`\nResults\n${rule}\n${line({ metric: 'metric', value: 'value', target: 'target', met: 'met' })}\n${rule}\n${rows.map(line).join('\n')}\n${rule}\n`);
  process.stdout.write(missed === 0 ? 'all targets met\n' : `${missed} target(s) missed\n`);
  if (disturbed.length > 0) {
    process.stdout.write(`\nWARNING: other processes competed for the CPU (> ${DISTURBED_PCT}% of a core), figures of these phases are disturbed:\n  ${disturbed.join('\n  ')}\n`);
  } else {
    process.stdout.write(`no interference: other processes stayed under ${DISTURBED_PCT}% of a core in every measured phase\n`);
  }
  return missed;
}

let exitCode = 0;
try {
  const missed = await main();
  if (missed > 0 && settings.enforce) exitCode = 1;
} catch (err) {
  if (!interrupted) {
    process.stderr.write(`\n[audit] FAILED: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    exitCode = 1;
  }
} finally {
  await cleanup();
}
process.exit(interrupted ? 130 : exitCode);
