/**
 * `npx tsx bench/vault.ts`: key rotation of the credentials vault on PostgreSQL.
 *
 *   1. A fresh database budapp_vault_bench_<random> (dropped at the end, also on failure and Ctrl-C), migrated
 *      with the service's migrations; a temporary keys directory with one RSA key-encryption key (KEK).
 *   2. Seeds BENCH_VAULT_KEYS (100,000) credentials, each sealed properly with seal() under its own AAD
 *      (credentialAad), in multi-row INSERTs of BENCH_SEED_BATCH (2,000).
 *   3. The machine's limit: bare RSA-OAEP-SHA256 privateDecrypt of wrapped 32-byte keys under that KEK, on
 *      BENCH_THREADS worker threads (default: all cores), for BENCH_LIMIT_SECONDS — measured right before and
 *      right after the rewrap; the limit is their mean.
 *   4. Generates a second KEK and makes it current, then, in a child process (so its peak RSS is its own),
 *      builds the service's deps (createDeps) and times rewrapAll(ctx, { batchSize: BENCH_VAULT_BATCH,
 *      unwrapBatch: pool.rewrapBatch }) with createRewrapPool (BENCH_VAULT_UNWRAP=local: the single-threaded
 *      default instead, for comparison).
 *   5. Verifies: every row is under the new KEK, the payloads (ciphertext, iv, tag) are byte-identical, a
 *      sample of BENCH_VERIFY_SAMPLE rows opens with a keyring holding only the new KEK, and the rotation is
 *      audited with the right count.
 *
 * Targets: rewrap keys/s ≥ 0.7 × the limit; peak RSS of the rewrap process ≤ 200 MB.
 *
 * Env (all optional):
 *   BENCH_DATABASE_URL   admin connection (default postgres://postgres@127.0.0.1:5432/postgres)
 *   BENCH_VAULT_KEYS     credentials to seed and rewrap (default 100000)
 *   BENCH_VAULT_BATCH    rewrapAll batchSize (default 2000)
 *   BENCH_VAULT_UNWRAP   pool (default) | local
 *   BENCH_THREADS        worker threads for the pool and the limit (default os.availableParallelism())
 *   BENCH_SEED_BATCH     rows per INSERT while seeding (default 2000)
 *   BENCH_LIMIT_SECONDS  length of each limit measurement (default 10)
 *   BENCH_VERIFY_SAMPLE  rows opened after the rewrap (default 500)
 *   BENCH_CHILD_NODE_FLAGS  node flags for the rewrap child, e.g. --max-semi-space-size=4 (default none)
 *   BENCH_ENFORCE        1: exit 1 when a target is missed (a correctness failure always exits 1)
 *
 * The rewrap child runs as `node --import tsx`, like `npm run keys:rotate`: the tsx loader thread is part of
 * its RSS (reported as "at child start").
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { generateKek, KEK_BITS, Keyring } from '../src/platform/crypto/keyring.js';
import { createCleanups, envNumber, formatCpu, startCpuMonitor, type CpuShare } from './common.js';
// Everything else is imported where it is used, so the rewrap child loads only what a rotation needs and its
// peak RSS is the rotation's own.

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SELF = fileURLToPath(import.meta.url);
const RESULT_PREFIX = 'RESULT ';


const int = (n: number) => Math.round(n).toLocaleString('en-US');
const mb = (bytes: number) => bytes / (1024 * 1024);
const load = () => os.loadavg().map((x) => x.toFixed(2)).join(' ');
const say = (line: string) => process.stdout.write(`${line}\n`);
const phase = (line: string) => process.stdout.write(`[vault] ${line}\n`);

// ===================================================================================== child: the rewrap

interface ChildResult {
  unwrap: string;
  threads: number;
  batchSize: number;
  seconds: number;
  rewrapped: number;
  remaining: number;
  missingKey: number;
  batches: number;
  /** Wall time spent inside unwrapBatch (the RSA work), summed over batches. */
  cryptoSeconds: number;
  /** One countNotCurrent over the seeded table, timed before the rewrap (rewrapAll runs one per batch). */
  countSeconds: number;
  /** RSS when the child starts (node + the tsx loader), and once deps and the pool are up. */
  rssBareMb: number;
  rssStartMb: number;
  maxRssMb: number;
  cpuSeconds: number;
}

async function child() {
  const rssBareMb = mb(process.memoryUsage.rss());
  const { loadConfig } = await import('../src/config.js');
  const { closeDeps, createDeps } = await import('../src/deps.js');
  const { countNotCurrent, rewrapAll } = await import('../src/domains/credentials/rewrap.js');
  const { createLogger } = await import('../src/lib/logger.js');
  const { createRewrapPool } = await import('../src/platform/crypto/rewrap-pool.js');
  const unwrap = process.env.BENCH_VAULT_UNWRAP === 'local' ? 'local' : 'pool';
  const batchSize = envNumber('BENCH_VAULT_BATCH', 2000, 1);
  const threads = envNumber('BENCH_THREADS', os.availableParallelism(), 1);
  const total = envNumber('BENCH_VAULT_KEYS', 100_000, 1);
  const config = loadConfig({
    NODE_ENV: 'development',
    DATA_DIR: process.env.BENCH_DATA_DIR,
    DATABASE_URL: process.env.BENCH_URL,
    DATABASE_POOL_SIZE: '2',
    CREDENTIAL_KEYS_DIR: process.env.BENCH_KEYS_DIR,
    LOG_LEVEL: 'warn',
    RATE_LIMIT_ENABLED: 'false',
  });
  const deps = await createDeps(config, { log: createLogger('warn') });
  const pool = unwrap === 'pool' ? createRewrapPool(deps.keyring, threads) : undefined;
  try {
    // Warm the connections and time the per-batch count once, on the full table.
    await countNotCurrent(deps.db, deps.keyring);
    const c0 = performance.now();
    await countNotCurrent(deps.db, deps.keyring);
    const countSeconds = (performance.now() - c0) / 1000;
    if (pool && pool.targetKekId !== deps.keyring.currentId) throw new Error('the pool does not wrap under the current key');
    const rssStartMb = mb(process.memoryUsage.rss());
    let cryptoMs = 0;
    let batches = 0;
    const inner = pool?.rewrapBatch;
    const unwrapBatch = inner
      ? async (items: { kekId: string; wrapped: Buffer }[]) => {
          const t = performance.now();
          try {
            return await inner(items);
          } finally {
            cryptoMs += performance.now() - t;
            batches++;
          }
        }
      : undefined;
    const cpu0 = process.cpuUsage();
    const started = performance.now();
    let nextReport = 0.1;
    const result = await rewrapAll(
      { db: deps.db, clock: deps.clock, ids: deps.ids, log: deps.log, deps, actor: null, requestId: 'bench-vault', ip: 'unknown', userAgent: 'bench/vault.ts' },
      {
        batchSize,
        unwrapBatch,
        onProgress: (p) => {
          if (!unwrapBatch) batches++;
          if (p.rewrapped >= nextReport * total) {
            nextReport = Math.floor((p.rewrapped / total) * 10 + 1) / 10;
            const s = (performance.now() - started) / 1000;
            say(`  rewrapped ${int(p.rewrapped)} / ${int(total)}, ${int(p.remaining)} remaining — ${int(p.rewrapped / s)} keys/s, rss ${mb(process.memoryUsage.rss()).toFixed(0)} MB, load ${load()}`);
          }
        },
      },
    );
    const seconds = (performance.now() - started) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const out: ChildResult = {
      unwrap,
      threads: pool ? threads : 1,
      batchSize,
      seconds,
      rewrapped: result.rewrapped,
      remaining: result.remaining,
      missingKey: result.missingKey,
      batches,
      cryptoSeconds: unwrapBatch ? cryptoMs / 1000 : NaN,
      countSeconds,
      rssBareMb,
      rssStartMb,
      maxRssMb: process.resourceUsage().maxRSS / 1024, // kilobytes
      cpuSeconds: (cpu.user + cpu.system) / 1e6,
    };
    say(`${RESULT_PREFIX}${JSON.stringify(out)}`);
  } finally {
    await pool?.close();
    await closeDeps(deps);
  }
}

// ============================================================================== CPU accounting (Linux)



// ================================================================================ the machine's limit

const LIMIT_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const c = require('node:crypto');
const key = c.createPrivateKey(workerData.pem);
const O = { padding: c.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' };
const wrapped = workerData.wrapped.map((b) => Buffer.from(b));
for (let i = 0; i < 8; i++) c.privateDecrypt({ key, ...O }, wrapped[i % wrapped.length]).fill(0);
parentPort.postMessage('ready');
parentPort.once('message', ({ start, until }) => {
  while (Date.now() < start);
  let n = 0;
  while (Date.now() < until) {
    c.privateDecrypt({ key, ...O }, wrapped[n % wrapped.length]).fill(0);
    n++;
  }
  parentPort.postMessage(n);
});
`;

/** Bare RSA-OAEP-SHA256 unwraps per second on `threads` worker threads, all decrypting for the same window. */
async function measureLimit(keyring: Keyring, kekId: string, threads: number, seconds: number): Promise<{ perSecond: number; cpuMicrosPerUnwrap: number; cpu: CpuShare }> {
  const wrapped = Array.from({ length: 64 }, () => new Uint8Array(keyring.wrap(randomBytes(32)).wrapped));
  const pem = keyring.privateKeyPem(kekId)!;
  const workers = Array.from({ length: threads }, () => new Worker(LIMIT_WORKER, { eval: true, workerData: { pem, wrapped }, execArgv: [] }));
  try {
    await Promise.all(workers.map((w) => new Promise((resolve, reject) => (w.once('message', resolve), w.once('error', reject)))));
    const start = Date.now() + 100;
    const until = start + seconds * 1000;
    const monitor = startCpuMonitor(os.availableParallelism());
    const cpu0 = process.cpuUsage();
    const counts = await Promise.all(
      workers.map((w) => {
        const done = new Promise<number>((resolve, reject) => (w.once('message', resolve), w.once('error', reject)));
        w.postMessage({ start, until });
        return done;
      }),
    );
    const used = process.cpuUsage(cpu0);
    const cpu = monitor.stop();
    const ops = counts.reduce((a, b) => a + b, 0);
    return { perSecond: ops / seconds, cpuMicrosPerUnwrap: (used.user + used.system) / ops, cpu };
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

// ========================================================================================= orchestrator

const { onCleanup, cleanup } = createCleanups('vault');
const children = new Set<ChildProcess>();
let interrupted = false;

class BenchFailure extends Error {
  override name = 'BenchFailure';
}

function runChild(env: Record<string, string>): Promise<ChildResult> {
  const flags = (process.env.BENCH_CHILD_NODE_FLAGS ?? '').split(/\s+/).filter(Boolean);
  const proc = spawn(process.execPath, [...flags, '--import', 'tsx', SELF], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? os.tmpdir(), BENCH_VAULT_CHILD: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(proc);
  let result: ChildResult | undefined;
  let buf = '';
  const errTail: string[] = [];
  proc.stdout!.on('data', (chunk: Buffer) => {
    buf += chunk.toString('utf8');
    let nl: number;
    while ((nl = buf.indexOf('\n')) !== -1) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.startsWith(RESULT_PREFIX)) result = JSON.parse(line.slice(RESULT_PREFIX.length)) as ChildResult;
      else say(line);
    }
  });
  proc.stderr!.on('data', (chunk: Buffer) => {
    process.stderr.write(chunk);
    errTail.push(chunk.toString('utf8'));
    if (errTail.length > 20) errTail.shift();
  });
  return new Promise((resolve, reject) => {
    proc.on('error', reject);
    proc.on('exit', (code, signal) => {
      children.delete(proc);
      if (code === 0 && result) resolve(result);
      else reject(new BenchFailure(`rewrap child failed (${signal ?? `exit ${code}`}): ${errTail.join('').slice(-2000)}`));
    });
  });
}

async function main() {
  const { default: postgres } = await import('postgres');
  const { openDatabase } = await import('../src/db/client.js');
  const { credentialAad } = await import('../src/domains/credentials/service.js');
  const { systemClock } = await import('../src/lib/clock.js');
  const { open, seal } = await import('../src/lib/crypto/envelope.js');
  const { uuidV7Generator } = await import('../src/lib/ids.js');
  const settings = {
    adminUrl: process.env.BENCH_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres',
    keys: Math.floor(envNumber('BENCH_VAULT_KEYS', 100_000, 1)),
    batch: Math.floor(envNumber('BENCH_VAULT_BATCH', 2000, 1)),
    unwrap: process.env.BENCH_VAULT_UNWRAP === 'local' ? 'local' : 'pool',
    threads: Math.floor(envNumber('BENCH_THREADS', os.availableParallelism(), 1)),
    seedBatch: Math.floor(envNumber('BENCH_SEED_BATCH', 2000, 1)),
    limitSeconds: envNumber('BENCH_LIMIT_SECONDS', 10, 1),
    sample: Math.floor(envNumber('BENCH_VERIFY_SAMPLE', 500, 1)),
    enforce: process.env.BENCH_ENFORCE === '1',
  };
  const runStarted = performance.now();
  const loadBefore = load();
  const admin = postgres(settings.adminUrl, { max: 1, onnotice: () => {} });
  onCleanup('admin connection', () => admin.end({ timeout: 5 }));
  const [v] = await admin<{ version: string }[]>`select version()`;
  const cpus = os.cpus();
  say('budapp vault key-rotation benchmark');
  say(`  date        ${new Date().toISOString()}`);
  say(`  cpu         ${cpus[0]?.model.trim() ?? 'unknown'} × ${cpus.length} cores (availableParallelism ${os.availableParallelism()}), ${(os.totalmem() / 2 ** 30).toFixed(0)} GB RAM`);
  say(`  node        ${process.version}, OpenSSL ${process.versions.openssl}`);
  say(`  postgres    ${v?.version.split(' on ')[0] ?? '?'}`);
  say(`  load avg    ${loadBefore} (1/5/15 min) at start`);
  say(`  settings    ${int(settings.keys)} keys,${process.env.BENCH_CHILD_NODE_FLAGS ? ` child flags ${process.env.BENCH_CHILD_NODE_FLAGS},` : ''} RSA-${KEK_BITS} OAEP-SHA256, rewrap batch ${settings.batch}, unwrap ${settings.unwrap}${settings.unwrap === 'pool' ? ` × ${settings.threads} threads` : ''}, seed batch ${settings.seedBatch}\n`);

  // --- database and keys
  const database = `budapp_vault_bench_${randomBytes(4).toString('hex')}`;
  await admin.unsafe(`create database ${database}`);
  onCleanup(`drop ${database}`, () => admin.unsafe(`drop database if exists ${database} with (force)`).then(() => undefined));
  const url = new URL(settings.adminUrl);
  url.pathname = `/${database}`;
  const dbUrl = url.toString();
  const work = mkdtempSync(join(os.tmpdir(), 'budapp-vault-bench-'));
  onCleanup('temp dir', () => rmSync(work, { recursive: true, force: true }));
  const keysDir = join(work, 'keys');
  const dataDir = join(work, 'data');
  mkdirSync(dataDir);
  const migrated = await openDatabase({ kind: 'postgres', url: dbUrl, poolSize: 1 });
  await migrated.migrate();
  await migrated.close();
  const oldKek = generateKek(keysDir, true);
  const oldRing = Keyring.load(keysDir, { generateIfMissing: false });
  phase(`database ${database} migrated; key-encryption key ${oldKek} in ${keysDir}`);

  // --- seed
  const sql = postgres(dbUrl, { max: 2, onnotice: () => {} });
  onCleanup('bench connection', () => sql.end({ timeout: 5 }));
  const ids = uuidV7Generator(systemClock);
  const organizationId = ids.uuid();
  await sql`insert into organizations (id, name) values (${organizationId}, 'Vault bench')`;
  const secretOf = (i: number) => JSON.stringify({ api_key: `sk-bench-${i}-${'x'.repeat(24)}` });
  const seedStarted = performance.now();
  let inFlight: Promise<unknown> = Promise.resolve();
  let seeded = 0;
  let nextReport = 0.1;
  for (let from = 0; from < settings.keys; from += settings.seedBatch) {
    const rows = [];
    for (let i = from; i < Math.min(settings.keys, from + settings.seedBatch); i++) {
      const id = ids.uuid();
      const sealed = seal(Buffer.from(secretOf(i)), credentialAad({ organizationId, id, version: 1 }), oldRing);
      rows.push({
        id,
        organization_id: organizationId,
        kind: 'openai',
        name: `bench-${i}`,
        fields: {},
        masks: { api_key: '••••xxxx' },
        ciphertext: sealed.ciphertext,
        iv: sealed.iv,
        auth_tag: sealed.tag,
        wrapped_key: sealed.wrappedKey,
        kek_id: sealed.kekId,
        version: 1,
      });
    }
    await inFlight; // one INSERT in flight while the next batch is sealed
    inFlight = sql`insert into credentials ${sql(rows)}`.then(() => {
      seeded += rows.length;
      if (seeded >= nextReport * settings.keys || seeded === settings.keys) {
        nextReport = Math.floor((seeded / settings.keys) * 10 + 1) / 10;
        phase(`seeded ${int(seeded)} / ${int(settings.keys)} (${int(seeded / ((performance.now() - seedStarted) / 1000))} rows/s)`);
      }
    });
    if (interrupted) return;
  }
  await inFlight;
  await sql`vacuum analyze credentials`;
  const seedSeconds = (performance.now() - seedStarted) / 1000;
  const payloadDigest = async () => {
    const [r] = await sql<{ d: string }[]>`select md5(string_agg(ciphertext || iv || auth_tag, ''::bytea order by id)) as d from credentials`;
    return r!.d;
  };
  const digestBefore = await payloadDigest();
  phase(`seeded ${int(settings.keys)} credentials in ${seedSeconds.toFixed(1)} s (payload digest ${digestBefore})`);

  // --- limit before
  phase(`measuring the machine's limit (${settings.threads} threads × ${settings.limitSeconds} s of RSA-${KEK_BITS} OAEP-SHA256 unwraps), load ${load()}`);
  const limitBefore = await measureLimit(oldRing, oldKek, settings.threads, settings.limitSeconds);
  phase(`limit before: ${int(limitBefore.perSecond)} unwraps/s, ${int(limitBefore.cpuMicrosPerUnwrap)} CPU-µs each — ${formatCpu(limitBefore.cpu)}`);

  // --- rotate
  const newKek = generateKek(keysDir, true);
  phase(`new key-encryption key ${newKek} is current; rewrap in a child process, load ${load()}`);
  const rewrapMonitor = startCpuMonitor(os.availableParallelism());
  const loadAtRewrap = load();
  const rewrap = await runChild({
    BENCH_URL: dbUrl,
    BENCH_DATA_DIR: dataDir,
    BENCH_KEYS_DIR: keysDir,
    BENCH_VAULT_BATCH: String(settings.batch),
    BENCH_VAULT_UNWRAP: settings.unwrap,
    BENCH_THREADS: String(settings.threads),
    BENCH_VAULT_KEYS: String(settings.keys),
  });
  const rewrapCpu = rewrapMonitor.stop(rewrap.cpuSeconds);
  const loadAfterRewrap = load();

  // --- limit after
  const limitAfter = await measureLimit(oldRing, oldKek, settings.threads, settings.limitSeconds);
  phase(`limit after: ${int(limitAfter.perSecond)} unwraps/s, ${int(limitAfter.cpuMicrosPerUnwrap)} CPU-µs each — ${formatCpu(limitAfter.cpu)}`);

  // --- verify
  const failures: string[] = [];
  const [counts] = await sql<{ total: number; current: number }[]>`
    select count(*)::int as total, count(*) filter (where kek_id = ${newKek})::int as current from credentials`;
  if (counts!.total !== settings.keys || counts!.current !== settings.keys) failures.push(`${counts!.current} of ${counts!.total} rows under ${newKek} (expected ${settings.keys})`);
  if (rewrap.rewrapped !== settings.keys || rewrap.remaining !== 0 || rewrap.missingKey !== 0) failures.push(`rewrapAll reported ${JSON.stringify({ rewrapped: rewrap.rewrapped, remaining: rewrap.remaining, missingKey: rewrap.missingKey })}`);
  const digestAfter = await payloadDigest();
  if (digestAfter !== digestBefore) failures.push('payloads (ciphertext, iv, tag) changed');
  const onlyNew = join(work, 'only-new');
  mkdirSync(onlyNew);
  copyFileSync(join(keysDir, `${newKek}.pem`), join(onlyNew, `${newKek}.pem`));
  const newRing = Keyring.load(onlyNew, { generateIfMissing: false });
  const sample = await sql<{ id: string; name: string; organization_id: string; version: number; ciphertext: Buffer; iv: Buffer; auth_tag: Buffer; wrapped_key: Buffer; kek_id: string }[]>`
    select id, name, organization_id, version, ciphertext, iv, auth_tag, wrapped_key, kek_id from credentials order by random() limit ${settings.sample}`;
  let opened = 0;
  for (const r of sample) {
    try {
      const plain = open({ ciphertext: r.ciphertext, iv: r.iv, tag: r.auth_tag, wrappedKey: r.wrapped_key, kekId: r.kek_id }, credentialAad({ organizationId: r.organization_id, id: r.id, version: r.version }), newRing);
      if (plain.toString('utf8') === secretOf(Number(r.name.slice('bench-'.length)))) opened++;
    } catch {
      /* counted below */
    }
  }
  if (opened !== sample.length) failures.push(`${sample.length - opened} of ${sample.length} sampled rows did not open to their secret with only the new key`);
  const audits = await sql<{ details: { rewrapped: number; remaining: number; to_key_id: string } }[]>`
    select details from audit_records where action = 'key_rotation' order by seq desc limit 1`;
  if (audits[0]?.details.rewrapped !== settings.keys || audits[0]?.details.to_key_id !== newKek) failures.push(`audit record: ${JSON.stringify(audits[0]?.details)}`);
  const sampleDigest = createHash('sha256').update(sample.map((r) => r.wrapped_key.toString('hex')).join('')).digest('hex').slice(0, 12);

  // --- report
  const limit = (limitBefore.perSecond + limitAfter.perSecond) / 2;
  const rate = rewrap.rewrapped / rewrap.seconds;
  const ratio = rate / limit;
  const ratioMet = ratio >= 0.7;
  const rssMet = rewrap.maxRssMb <= 200;
  const dbSeconds = rewrap.seconds - rewrap.cryptoSeconds;
  // Load-independent view: CPU time per key of the rewrap process (workers, main thread) against CPU time per
  // bare unwrap. Other processes on the machine inflate wall-clock rates, much less these.
  const limitCpu = (limitBefore.cpuMicrosPerUnwrap + limitAfter.cpuMicrosPerUnwrap) / 2;
  const rewrapCpu1 = (rewrap.cpuSeconds * 1e6) / rewrap.rewrapped;
  say('');
  say('results');
  say(`  rewrap        ${int(rewrap.rewrapped)} keys in ${rewrap.seconds.toFixed(1)} s = ${int(rate)} keys/s (${rewrap.unwrap}${rewrap.unwrap === 'pool' ? ` × ${rewrap.threads} threads` : ''}, batch ${rewrap.batchSize}, ${rewrap.batches} batches)`);
  if (Number.isFinite(rewrap.cryptoSeconds)) {
    say(`                inside unwrapBatch ${rewrap.cryptoSeconds.toFixed(1)} s (${((100 * rewrap.cryptoSeconds) / rewrap.seconds).toFixed(1)}%), DB and the rest ${dbSeconds.toFixed(1)} s (${((100 * dbSeconds) / rewrap.seconds).toFixed(1)}%, ${((1000 * dbSeconds) / rewrap.batches).toFixed(0)} ms/batch)`);
    say(`                unwrap rate inside unwrapBatch ${int(rewrap.rewrapped / rewrap.cryptoSeconds)} keys/s; one countNotCurrent on the full table ${(rewrap.countSeconds * 1000).toFixed(1)} ms (run once per batch)`);
  }
  say(`                ${formatCpu(rewrapCpu)}; load ${loadAtRewrap} → ${loadAfterRewrap}`);
  say(`                CPU per key: rewrap process ${int(rewrapCpu1)} µs, all PostgreSQL processes ${int((rewrapCpu.postgres / 100) * (rewrap.seconds * 1e6) / rewrap.rewrapped)} µs; bare unwrap ${int(limitCpu)} µs → CPU-normalised ratio ${(limitCpu / rewrapCpu1).toFixed(2)}`);
  say(`  limit         ${int(limit)} bare unwraps/s (before ${int(limitBefore.perSecond)}, after ${int(limitAfter.perSecond)}; ${settings.threads} threads, RSA-${KEK_BITS} OAEP-SHA256, ${settings.limitSeconds} s each)`);
  say(`  ratio         ${ratio.toFixed(2)} of the limit (wall clock, the target figure) — target ≥ 0.7: ${ratioMet ? 'MET' : 'NOT MET'}`);
  say(`  peak RSS      ${rewrap.maxRssMb.toFixed(0)} MB (rewrap child${process.env.BENCH_CHILD_NODE_FLAGS ? ` with ${process.env.BENCH_CHILD_NODE_FLAGS}` : ''}; ${rewrap.rssBareMb.toFixed(0)} MB at child start (node + tsx), ${rewrap.rssStartMb.toFixed(0)} MB with deps and pool up) — target ≤ 200 MB: ${rssMet ? 'MET' : 'NOT MET'}`);
  say(`  seeding       ${int(settings.keys)} rows in ${seedSeconds.toFixed(1)} s`);
  say(`  total         ${((performance.now() - runStarted) / 1000).toFixed(1)} s; load average ${loadBefore} at start, ${load()} at end`);
  say(
    `  verified      ${failures.length === 0 ? `all ${int(counts!.current)} rows under ${newKek}, payloads byte-identical, ${opened}/${sample.length} sampled rows open with only the new key (sample ${sampleDigest}), rotation audited` : `FAILED:\n    ${failures.join('\n    ')}`}`,
  );
  if (failures.length > 0) throw new BenchFailure('verification failed');
  if (settings.enforce && !(ratioMet && rssMet)) process.exitCode = 1;
}

if (process.env.BENCH_VAULT_CHILD === '1') {
  child().catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
} else {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      if (interrupted) return;
      interrupted = true;
      process.stderr.write(`\n[vault] ${signal} received: stopping, dropping the bench database\n`);
      for (const c of children) c.kill('SIGTERM');
      void cleanup().finally(() => process.exit(130));
    });
  }
  main()
    .catch((err: unknown) => {
      if (interrupted) return;
      process.stderr.write(`[vault] ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = 1;
    })
    .finally(() => cleanup());
}
