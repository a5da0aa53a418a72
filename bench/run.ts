/**
 * `npm run bench`: authenticated single-row read (GET a user by id) through the real service, over REST
 * and over tRPC, against a raw Hono + jose + postgres.js handler doing the same token verification and
 * the same SQL (bench/raw-server.ts); and a page of projects (GET /projects?limit=20) in an organisation
 * of 10,000 projects, as a developer who is a member of 50 of them and as the organisation's admin.
 * One run on PostgreSQL:
 *
 *   1. creates a fresh database budapp_bench_<random> (dropped at the end, also on failure or Ctrl-C);
 *   2. builds the service's bundle and starts it as `npm start` does (dist/main.js with the start script's
 *      node flags, NODE_ENV=production), and the raw server, as child processes;
 *   3. signs in as the super admin, creates one user to read, checks that all three targets answer the
 *      same JSON for that user;
 *   4. for the project targets: creates an organisation, its admin and a developer through the API, then
 *      inserts 10,000 projects (UUIDv7 ids, as the service makes them), an owner membership each for the
 *      admin and 50 viewer memberships for the developer spread over the range, straight into the bench
 *      database, vacuums and analyzes, and checks that both project targets answer 200 with 20 items;
 *   5. loads each target with wrk, or autocannon where wrk is not installed (warm-up, then a measured run),
 *      interleaved over several rounds;
 *   6. prints requests/s, p50 and p99 (mean over rounds), CPU per request of the serving process and of the
 *      bench database's PostgreSQL backends (local PostgreSQL only), the ratios REST/raw and tRPC/raw, and
 *      for the project pages p99 against BENCH_LIST_P99_MS and req/s against the raw single-row baseline.
 *
 * Env (all optional):
 *   BENCH_DATABASE_URL  admin connection used to create/drop the bench database
 *                       (default postgres://postgres@127.0.0.1:5432/postgres)
 *   BENCH_DURATION      measured seconds per target per round (default 8)
 *   BENCH_WARMUP        warm-up seconds before each measured run (default 2)
 *   BENCH_CONNECTIONS   concurrent connections for the user reads (default 32)
 *   BENCH_LIST_CONNECTIONS  concurrent connections for the project pages (default 50)
 *   BENCH_LIST_P99_MS   the p99 target for the project pages, ms (default 25)
 *   BENCH_ROUNDS        interleaved rounds (default 2)
 *   BENCH_TARGETS       comma list among rest,trpc,raw,projects-member,projects-admin (default all five)
 *   BENCH_CPU_PROF      a directory: run both servers with --cpu-prof, profiles written there on exit
 *                       (summarise with `npx tsx bench/profile-summary.ts <file.cpuprofile>`)
 *   BENCH_NODE_ARGS     extra node flags for the service, space-separated (e.g. --trace-gc, which NODE_OPTIONS refuses)
 *   BENCH_RAW_PREPARE   false: the raw server sends unnamed (unprepared) statements, as drizzle does
 *   BENCH_MIN_RATIO     the target ratio (default 0.9)
 *   BENCH_LOAD          wrk or autocannon (default: wrk when installed — Debian package wrk — else autocannon)
 *   BENCH_SERVICE_ENV   extra settings for the service, e.g. DATABASE_POOL_SIZE=4,DATABASE_READ_POOL_SIZE=1
 *   BENCH_KEEP_DB       1: keep the bench database at the end, for EXPLAIN and experiments
 *   BENCH_ENFORCE       1: exit 1 when a ratio is below BENCH_MIN_RATIO or a project page's p99 is above
 *                       BENCH_LIST_P99_MS (non-200 answers always fail)
 */
import autocannon from 'autocannon';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import postgres from 'postgres';
import { systemClock } from '../src/lib/clock.js';
import { uuidV7Generator } from '../src/lib/ids.js';
import { createCleanups, envNumber, startScriptFlags } from './common.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** BENCH_LOAD, or wrk when it is installed (Debian package wrk), else autocannon. */
function loadGeneratorSetting(): 'wrk' | 'autocannon' {
  const wanted = process.env.BENCH_LOAD;
  if (wanted === 'wrk' || wanted === 'autocannon') return wanted;
  if (wanted) throw new Error(`BENCH_LOAD: expected wrk or autocannon, got ${wanted}`);
  try {
    execFileSync('wrk', ['--version'], { stdio: 'ignore' });
    return 'wrk';
  } catch (err) {
    // wrk --version prints its banner and exits 1; only a missing binary means it is not there.
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'autocannon' : 'wrk';
  }
}


const settings = {
  adminUrl: process.env.BENCH_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres',
  duration: envNumber('BENCH_DURATION', 8, 1),
  warmup: envNumber('BENCH_WARMUP', 2, 0),
  connections: envNumber('BENCH_CONNECTIONS', 32, 1),
  listConnections: envNumber('BENCH_LIST_CONNECTIONS', 50, 1),
  listP99Ms: envNumber('BENCH_LIST_P99_MS', 25, 0),
  rounds: envNumber('BENCH_ROUNDS', 2, 1),
  minRatio: envNumber('BENCH_MIN_RATIO', 0.9, 0),
  enforce: process.env.BENCH_ENFORCE === '1' || process.env.BENCH_ENFORCE === 'true',
  cpuProfDir: process.env.BENCH_CPU_PROF ? resolve(process.env.BENCH_CPU_PROF) : undefined,
  serviceNodeArgs: (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean),
  rawPrepare: process.env.BENCH_RAW_PREPARE !== 'false',
  keepDb: process.env.BENCH_KEEP_DB === '1',
  loadGenerator: loadGeneratorSetting(),
  serviceEnv: Object.fromEntries(
    (process.env.BENCH_SERVICE_ENV ?? '')
      .split(',')
      .filter((kv) => kv.includes('='))
      .map((kv) => [kv.slice(0, kv.indexOf('=')).trim(), kv.slice(kv.indexOf('=') + 1).trim()]),
  ) as Record<string, string>,
};

type TargetName = 'rest' | 'trpc' | 'raw' | 'projects-member' | 'projects-admin';
const TARGET_LABEL: Record<TargetName, string> = {
  rest: 'REST  GET /users/{id}',
  trpc: 'tRPC  GET /trpc/users.get',
  raw: 'raw   GET /users/{id}',
  'projects-member': 'REST  GET /projects (member)',
  'projects-admin': 'REST  GET /projects (admin)',
};
const LABEL_WIDTH = Math.max(...Object.values(TARGET_LABEL).map((l) => l.length));
const selectedTargets = (process.env.BENCH_TARGETS ?? 'rest,trpc,raw,projects-member,projects-admin')
  .split(',')
  .map((s) => s.trim().toLowerCase())
  .filter(Boolean) as TargetName[];
for (const t of selectedTargets) if (!(t in TARGET_LABEL)) throw new Error(`BENCH_TARGETS: unknown target ${t}`);

/** The project-page targets: loaded with BENCH_LIST_CONNECTIONS and held to the p99 target. */
const isListTarget = (t: TargetName): t is 'projects-member' | 'projects-admin' => t === 'projects-member' || t === 'projects-admin';
const connectionsFor = (t: TargetName) => (isListTarget(t) ? settings.listConnections : settings.connections);
const userReadTargets = selectedTargets.filter((t) => !isListTarget(t));
const listTargets = selectedTargets.filter(isListTarget);

/** The project-page data set (the issue's figures). */
const PROJECT_COUNT = 10_000;
const MEMBER_PROJECT_COUNT = 50;
const PAGE_LIMIT = 20;

const SUPER_EMAIL = 'bench-admin@example.test';
const SUPER_PASSWORD = `bench-${randomBytes(12).toString('hex')}`;
const USER_PASSWORD = `user-${randomBytes(12).toString('hex')}`;

// ---------------------------------------------------------------------------------------------- output

const startedAt = Date.now();
const elapsed = () => `${((Date.now() - startedAt) / 1000).toFixed(1).padStart(5)}s`;
const phase = (msg: string) => process.stdout.write(`[bench ${elapsed()}] ${msg}\n`);

// --------------------------------------------------------------------------------------------- cleanup

const { onCleanup, cleanup } = createCleanups('bench');


let interrupted = false;
/** The load run in progress (autocannon in this process, or a wrk child), stopped first on Ctrl-C so the servers can drain and exit. */
let activeLoad: autocannon.Instance | undefined;
let activeWrk: ChildProcess | undefined;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (interrupted) return;
    interrupted = true;
    process.stderr.write(`\n[bench] ${signal} received: stopping the load, the servers, and dropping the bench database\n`);
    activeLoad?.stop();
    activeWrk?.kill('SIGINT');
    void cleanup().finally(() => process.exit(130));
  });
}

// -------------------------------------------------------------------------------------------- children

interface Child {
  name: string;
  proc: ChildProcess;
  /** Last lines of output, for error reports. */
  tail: string[];
  exited: Promise<number | null>;
}

/** Scripts ending in .ts run under tsx; the service runs as `npm start` runs it, from its bundle, with its flags. */
function startChild(name: string, script: string, env: Record<string, string>): Child {
  const nodeArgs = script.endsWith('.ts') ? ['--import', 'tsx'] : startScriptFlags(ROOT);
  if (name === 'service') nodeArgs.push(...settings.serviceNodeArgs);
  if (settings.cpuProfDir) {
    const dir = join(settings.cpuProfDir, name);
    mkdirSync(dir, { recursive: true });
    nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${dir}`);
  }
  const proc = spawn(process.execPath, [...nodeArgs, script], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? os.tmpdir(), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const tail: string[] = [];
  const collect = (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (line.trim() === '') continue;
      tail.push(line);
      if (tail.length > 40) tail.shift();
      // Servers run at LOG_LEVEL=warn: anything they print is worth seeing.
      process.stderr.write(`[${name}] ${line}\n`);
    }
  };
  proc.stdout!.on('data', collect);
  proc.stderr!.on('data', collect);
  const exited = new Promise<number | null>((resolveExit) => proc.once('exit', (code) => resolveExit(code)));
  const child = { name, proc, tail, exited };
  onCleanup(`stop ${name}`, () => stopChild(child));
  return child;
}

async function stopChild(child: Child): Promise<void> {
  if (child.proc.exitCode !== null || child.proc.signalCode !== null) return;
  child.proc.kill('SIGTERM');
  const timer = setTimeout(() => child.proc.kill('SIGKILL'), 8_000);
  await child.exited;
  clearTimeout(timer);
}

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolvePort(port));
    });
  });
}

/** Polls `url` until `ok(status)`; fails early if the child exits. */
async function waitFor(child: Child, url: string, ok: (status: number) => boolean, timeoutMs = 90_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exitCode: number | null | undefined;
  void child.exited.then((code) => (exitCode = code));
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    if (exitCode !== undefined) {
      throw new Error(`${child.name} exited with code ${exitCode} before it was ready:\n  ${child.tail.join('\n  ')}`);
    }
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
      await res.arrayBuffer();
      if (ok(res.status)) return;
      last = `HTTP ${res.status}`;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${child.name} not ready at ${url} after ${timeoutMs / 1000}s (${last}):\n  ${child.tail.join('\n  ')}`);
}

// ----------------------------------------------------------------------------------------------- HTTP

async function call(method: string, url: string, token?: string, body?: unknown): Promise<{ status: number; json: any; text: string }> {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text };
}

function expectStatus(what: string, res: { status: number; text: string }, status: number) {
  if (res.status !== status) throw new Error(`${what}: expected HTTP ${status}, got ${res.status}: ${res.text.slice(0, 500)}`);
}

const canonical = (value: unknown): string =>
  JSON.stringify(value, (_k, v) =>
    v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a.localeCompare(b))) : v,
  );

// --------------------------------------------------------------------------------------------- loading

interface Measurement {
  target: TargetName;
  round: number;
  rps: number;
  p50: number;
  p99: number;
  tail: LoadResult['tailMs'];
  requests: number;
  /** CPU time (user + system, all threads) the serving process spent per request, µs; undefined off Linux. */
  cpuUsPerReq?: number;
  /** CPU time the bench database's PostgreSQL backends spent per request, µs; undefined when not measurable. */
  dbCpuUsPerReq?: number;
}

/** utime + stime of a process in µs, from /proc (Linux; clock ticks are 100 Hz there). */
function processCpuUs(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (Number(fields[11]) + Number(fields[12])) * 10_000;
  } catch {
    return undefined;
  }
}

/**
 * CPU time of the PostgreSQL backends connected to the bench database, by pid (PostgreSQL on this machine
 * only: read from /proc). Only backends of that database count, so other databases' load is left out.
 */
async function dbBackendCpuUs(admin: postgres.Sql, dbName: string): Promise<Map<number, number> | undefined> {
  const rows = await admin<{ pid: number }[]>`select pid from pg_stat_activity where datname = ${dbName} and pid <> pg_backend_pid()`;
  const out = new Map<number, number>();
  for (const { pid } of rows) {
    const us = processCpuUs(pid);
    if (us === undefined) return undefined;
    out.set(pid, us);
  }
  return out.size > 0 ? out : undefined;
}

/** CPU spent between two readings; a backend that started in between counts from zero. */
function dbCpuDelta(before: Map<number, number> | undefined, after: Map<number, number> | undefined): number | undefined {
  if (!before || !after) return undefined;
  let total = 0;
  for (const [pid, us] of after) total += us - (before.get(pid) ?? 0);
  return total;
}

/** One measured (or warm-up) run of a load generator, in the units the report uses. */
interface LoadResult {
  requests: number;
  seconds: number;
  p50Ms: number;
  p99Ms: number;
  /** The rest of the tail, for the per-round line: p90, p99.9 and the slowest answer. */
  tailMs: { p90: number; p999: number; max: number };
  /** Empty when every answer was a 200; otherwise what went wrong, for the error message. */
  failures: string;
}

function load(url: string, headers: Record<string, string>, duration: number, connections: number): Promise<LoadResult> {
  if (interrupted) return Promise.reject(new Error('interrupted'));
  return settings.loadGenerator === 'wrk' ? loadWithWrk(url, headers, duration, connections) : loadWithAutocannon(url, headers, duration, connections);
}

function loadWithAutocannon(url: string, headers: Record<string, string>, duration: number, connections: number): Promise<LoadResult> {
  return new Promise((resolveRun, reject) => {
    activeLoad = autocannon({ url, headers, connections, duration, timeout: 10 }, (err, r) => {
      activeLoad = undefined;
      if (interrupted) return reject(new Error('interrupted'));
      if (err) return reject(err);
      const codes = Object.entries(r.statusCodeStats).filter(([code]) => code !== '200');
      const failed = r.non2xx > 0 || r.errors > 0 || r.timeouts > 0 || codes.length > 0;
      const detail = Object.entries(r.statusCodeStats)
        .map(([code, st]) => `${code}: ${st.count}`)
        .join(', ');
      resolveRun({
        requests: r.requests.total,
        seconds: r.duration,
        p50Ms: r.latency.p50,
        p99Ms: r.latency.p99,
        tailMs: { p90: r.latency.p90, p999: r.latency.p99_9 ?? Number.NaN, max: r.latency.max },
        failures: failed ? `non2xx=${r.non2xx} errors=${r.errors} timeouts=${r.timeouts} (status codes ${detail || 'none'})` : '',
      });
    });
  });
}

/**
 * wrk (C, one thread) spends a fraction of autocannon's CPU per request, and the load generator shares the
 * two cores with the servers and PostgreSQL. Its Lua `done` hook prints the figures as one JSON line;
 * latencies are in microseconds. wrk counts every status outside 2xx/3xx as an error; a 2xx other than 200
 * is not expected from these GETs.
 */
const WRK_SCRIPT = `
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK_RESULT {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
`;

function loadWithWrk(url: string, headers: Record<string, string>, duration: number, connections: number): Promise<LoadResult> {
  const script = join(os.tmpdir(), `budapp-bench-wrk-${process.pid}.lua`);
  writeFileSync(script, WRK_SCRIPT);
  const args = ['-t1', `-c${connections}`, `-d${duration}s`, '--timeout', '10s', '-s', script];
  for (const [name, value] of Object.entries(headers)) args.push('-H', `${name}: ${value}`);
  args.push(url);
  return new Promise((resolveRun, reject) => {
    const proc = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    activeWrk = proc;
    let out = '';
    proc.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
    proc.stderr.on('data', (c: Buffer) => (out += c.toString('utf8')));
    proc.on('error', reject);
    proc.on('close', (code) => {
      activeWrk = undefined;
      if (interrupted) return reject(new Error('interrupted'));
      const line = out.split('\n').find((l) => l.startsWith('WRK_RESULT '));
      if (code !== 0 || !line) return reject(new Error(`wrk exited with ${code}: ${out.trim().slice(0, 500)}`));
      const w = JSON.parse(line.slice('WRK_RESULT '.length)) as Record<string, number>;
      const errors = w.connect! + w.read! + w.write! + w.timeout!;
      resolveRun({
        requests: w.requests!,
        seconds: w.duration_us! / 1e6,
        p50Ms: w.p50_us! / 1000,
        p99Ms: w.p99_us! / 1000,
        tailMs: { p90: w.p90_us! / 1000, p999: w.p999_us! / 1000, max: w.max_us! / 1000 },
        failures: errors + w.status! > 0 ? `non-2xx/3xx=${w.status} socket errors=${errors - w.timeout!} timeouts=${w.timeout}` : '',
      });
    });
  });
}

/** Every answer must be a 200: anything else (or a socket error or timeout) fails the run loudly. */
function assertAll200(what: string, r: LoadResult) {
  if (r.failures) throw new Error(`${what}: not every response was a 200 — ${r.failures}`);
  if (r.requests === 0) throw new Error(`${what}: no request completed`);
}

// ----------------------------------------------------------------------------------------------- table

function table(headers: string[], rows: string[][], rightAlign: boolean[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fmt = (cells: string[]) =>
    `| ${cells.map((c, i) => (rightAlign[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(' | ')} |`;
  const sep = `|${widths.map((w, i) => (rightAlign[i] ? `${'-'.repeat(w + 1)}:` : `${'-'.repeat(w + 2)}`)).join('|')}|`;
  return [fmt(headers), sep, ...rows.map(fmt)].join('\n');
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** The commit measured, and whether src/ had uncommitted changes; undefined outside a git checkout. */
function codeVersion(): string | undefined {
  try {
    const git = (...args: string[]) => execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = git('status', '--porcelain', '--', 'src', 'drizzle', 'package.json') !== '';
    return `${git('rev-parse', '--short', 'HEAD')}${dirty ? ' + uncommitted changes in src/' : ''}`;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------- project data

/**
 * 10,000 projects of one organisation, each with an owner membership for the organisation's admin, and
 * viewer memberships for the developer on MEMBER_PROJECT_COUNT of them spread evenly over the range (so a
 * member's newest-first page walks past many projects they cannot see). Inserted with multi-row inserts
 * on a connection of its own, ids from the service's UUIDv7 generator (time-ordered like real ones).
 * Returns the ids the two first pages must show, newest first.
 */
async function seedProjects(dbUrl: string, orgId: string, adminId: string, memberId: string) {
  const db = postgres(dbUrl, { max: 1, onnotice: () => {} });
  try {
    const ids = uuidV7Generator(systemClock);
    const environments = ['development', 'staging', 'production'] as const;
    const stride = PROJECT_COUNT / MEMBER_PROJECT_COUNT;
    const allIds: string[] = [];
    const memberIds: string[] = [];
    const batchSize = 1000;
    for (let start = 0; start < PROJECT_COUNT; start += batchSize) {
      const now = new Date();
      const rows = Array.from({ length: Math.min(batchSize, PROJECT_COUNT - start) }, (_, j) => {
        const i = start + j;
        return {
          id: ids.uuid(),
          name: `Bench project ${String(i).padStart(5, '0')}`,
          description: `Seeded by npm run bench: project ${i} of ${PROJECT_COUNT}`,
          organization_id: orgId,
          owner_id: adminId,
          settings: { icon: 'rocket', environment: environments[i % environments.length]! },
          created_at: now,
          updated_at: now,
        };
      });
      await db`insert into projects ${db(rows)}`;
      const memberships: { project_id: string; user_id: string; role: string; created_at: Date; updated_at: Date }[] = rows.map((r) => ({
        project_id: r.id,
        user_id: adminId,
        role: 'owner',
        created_at: now,
        updated_at: now,
      }));
      rows.forEach((r, j) => {
        if ((start + j) % stride === Math.floor(stride / 2)) {
          memberships.push({ project_id: r.id, user_id: memberId, role: 'viewer', created_at: now, updated_at: now });
          memberIds.push(r.id);
        }
      });
      await db`insert into project_members ${db(memberships)}`;
      allIds.push(...rows.map((r) => r.id));
    }
    // As autovacuum leaves a table in steady state: statistics, and a visibility map that lets the membership
    // index-only scan skip the heap.
    await db`vacuum (analyze) projects, project_members`;
    const [{ projects: p, members: m }] = (await db`
      select (select count(*)::int from projects where organization_id = ${orgId}) as projects,
             (select count(*)::int from project_members where user_id = ${memberId}) as members`) as unknown as [{ projects: number; members: number }];
    if (p !== PROJECT_COUNT || m !== MEMBER_PROJECT_COUNT) throw new Error(`seeding: expected ${PROJECT_COUNT} projects and ${MEMBER_PROJECT_COUNT} memberships, found ${p} and ${m}`);
    const newestFirst = (xs: string[]) => [...xs].sort().reverse().slice(0, PAGE_LIMIT);
    return { adminPage: newestFirst(allIds), memberPage: newestFirst(memberIds) };
  } finally {
    await db.end({ timeout: 5 });
  }
}

// ------------------------------------------------------------------------------------------------ main

async function main(): Promise<number> {
  const loadAtStart = os.loadavg()[0]!;
  if (loadAtStart > os.cpus().length * 0.5) {
    phase(`warning: 1-minute load average is ${loadAtStart.toFixed(2)} on ${os.cpus().length} cores before the bench starts; figures will be noisy`);
  }
  const connectionsText = [
    userReadTargets.length > 0 ? `${settings.connections} connections (user reads)` : undefined,
    listTargets.length > 0 ? `${settings.listConnections} connections (project pages)` : undefined,
  ]
    .filter(Boolean)
    .join(', ');
  phase(
    `settings: ${connectionsText}, ${settings.warmup}s warm-up + ${settings.duration}s measured per target, ` +
      `${settings.rounds} interleaved round(s), targets ${selectedTargets.join(',')}`,
  );

  // 1. Fresh database.
  const dbName = `budapp_bench_${randomBytes(6).toString('hex')}`;
  const admin = postgres(settings.adminUrl, { max: 1, onnotice: () => {} });
  onCleanup('close admin connection', () => admin.end({ timeout: 5 }));
  const [{ version: pgVersion }] = (await admin`select current_setting('server_version') as version`) as unknown as [{ version: string }];
  await admin`create database ${admin(dbName)}`;
  onCleanup(`drop database ${dbName}`, async () => {
    if (settings.keepDb) {
      phase(`kept database ${dbName} (BENCH_KEEP_DB)`);
      return;
    }
    await admin`drop database if exists ${admin(dbName)} with (force)`;
    phase(`dropped database ${dbName}`);
  });
  const dbUrl = new URL(settings.adminUrl);
  dbUrl.pathname = `/${dbName}`;
  /** PostgreSQL's backends are only measurable (through /proc) when it runs on this machine. */
  const isLocalDb = ['127.0.0.1', 'localhost', '::1', '[::1]', ''].includes(dbUrl.hostname) && process.platform === 'linux';
  phase(`created database ${dbName} (PostgreSQL ${pgVersion} at ${dbUrl.hostname}:${dbUrl.port || 5432})`);

  // Signing key and data dir in a temp dir.
  const tmp = mkdtempSync(join(os.tmpdir(), 'budapp-bench-'));
  onCleanup('remove temp dir', () => rmSync(tmp, { recursive: true, force: true }));
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const privateKeyFile = join(tmp, 'jwt-ed25519.pem');
  const publicKeyFile = join(tmp, 'jwt-ed25519.pub.pem');
  writeFileSync(privateKeyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  writeFileSync(publicKeyFile, publicKey.export({ type: 'spki', format: 'pem' }), { mode: 0o600 });
  // Production also wants the audit checkpoint key (a separate Ed25519 key); older builds ignore the variable.
  const auditKeyFile = join(tmp, 'audit-ed25519.pem');
  writeFileSync(auditKeyFile, generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  // And the credentials vault's key-encryption key: one RSA private key (PKCS#8 PEM) in a directory of its own.
  const credentialKeysDir = join(tmp, 'credential-kek');
  mkdirSync(credentialKeysDir, { mode: 0o700 });
  writeFileSync(
    join(credentialKeysDir, 'bench-kek.pem'),
    generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }),
    { mode: 0o600 },
  );

  // 2. The service.
  const servicePort = await freePort();
  phase('building the service bundle (npm run build)');
  execFileSync('npm', ['run', '--silent', 'build'], { cwd: ROOT, stdio: 'inherit' });
  const service = startChild('service', 'dist/main.js', {
    NODE_ENV: 'production',
    HOST: '127.0.0.1',
    PORT: String(servicePort),
    DATA_DIR: join(tmp, 'data'),
    DATABASE_URL: dbUrl.toString(),
    JWT_PRIVATE_KEY_FILE: privateKeyFile,
    APP_API_TOKEN: randomBytes(32).toString('hex'),
    AUDIT_SIGNING_KEY_FILE: auditKeyFile,
    CREDENTIAL_KEYS_DIR: credentialKeysDir,
    SUPER_USER_EMAIL: SUPER_EMAIL,
    SUPER_USER_PASSWORD: SUPER_PASSWORD,
    LOG_LEVEL: 'warn',
    RATE_LIMIT_ENABLED: 'false',
    SHUTDOWN_TIMEOUT_MS: '3000',
    ...settings.serviceEnv,
  });
  const serviceBase = `http://127.0.0.1:${servicePort}`;
  phase(`starting service (pid ${service.proc.pid}) on ${serviceBase}, waiting for /ready`);
  await waitFor(service, `${serviceBase}/ready`, (s) => s === 200);
  phase('service ready');

  // 3. The raw baseline.
  const rawPort = await freePort();
  const raw = startChild('raw', 'bench/raw-server.ts', {
    NODE_ENV: 'production',
    PORT: String(rawPort),
    DATABASE_URL: dbUrl.toString(),
    JWT_PUBLIC_KEY_FILE: publicKeyFile,
    RAW_POOL_SIZE: '10',
    RAW_PREPARE: String(settings.rawPrepare),
  });
  const rawBase = `http://127.0.0.1:${rawPort}`;
  phase(`starting raw server (pid ${raw.proc.pid}) on ${rawBase}${settings.rawPrepare ? '' : ' (unprepared statements)'}`);
  await waitFor(raw, `${rawBase}/users/00000000-0000-0000-0000-000000000000`, (s) => s === 401);
  phase('raw server ready');

  // Sign in, create the user to read.
  const signIn = async (email: string, password: string) => {
    const login = await call('POST', `${serviceBase}/auth/login`, undefined, { email, password });
    expectStatus(`POST /auth/login as ${email}`, login, 200);
    return { email, password, token: login.json.access_token as string, expiresAt: Date.now() + (login.json.expires_in as number) * 1000 };
  };
  type Session = Awaited<ReturnType<typeof signIn>>;
  const superSession = await signIn(SUPER_EMAIL, SUPER_PASSWORD);
  const token = superSession.token;
  const created = await call('POST', `${serviceBase}/users`, token, {
    email: 'bench-reader@example.test',
    name: 'Bench Reader',
    role: 'developer',
    password: USER_PASSWORD,
  });
  expectStatus('POST /users', created, 201);
  const userId: string = created.json.id;
  phase(`signed in as ${SUPER_EMAIL}; created user ${userId} to read`);

  const urls: Record<TargetName, string> = {
    rest: `${serviceBase}/users/${userId}`,
    trpc: `${serviceBase}/trpc/users.get?input=${encodeURIComponent(JSON.stringify({ id: userId }))}`,
    raw: `${rawBase}/users/${userId}`,
    'projects-member': `${serviceBase}/projects?limit=${PAGE_LIMIT}`,
    'projects-admin': `${serviceBase}/projects?limit=${PAGE_LIMIT}`,
  };
  /** Who each target signs in as; the sessions are renewed between runs before their tokens expire. */
  const sessionOf: Partial<Record<TargetName, Session>> = { rest: superSession, trpc: superSession, raw: superSession };

  // The three must answer the same user, or the comparison is meaningless.
  const rest = await call('GET', urls.rest, token);
  const trpc = await call('GET', urls.trpc, token);
  const rawRes = await call('GET', urls.raw, token);
  expectStatus('REST GET /users/{id}', rest, 200);
  expectStatus('tRPC users.get', trpc, 200);
  expectStatus('raw GET /users/{id}', rawRes, 200);
  const bodies = { rest: canonical(rest.json), trpc: canonical(trpc.json?.result?.data), raw: canonical(rawRes.json) };
  if (bodies.rest !== bodies.trpc || bodies.rest !== bodies.raw) {
    throw new Error(`the targets disagree about user ${userId}:\n  REST ${bodies.rest}\n  tRPC ${bodies.trpc}\n  raw  ${bodies.raw}`);
  }
  phase(`all three targets answer the same ${rest.text.length}-byte user JSON`);

  if (listTargets.length > 0) {
    // An organisation with an admin and a developer, made through the API; then the projects, straight in.
    const org = await call('POST', `${serviceBase}/organizations`, token, { name: 'Bench organisation' });
    expectStatus('POST /organizations', org, 201);
    const orgId: string = org.json.id;
    const people: Record<'admin' | 'developer', { id: string; email: string }> = {} as never;
    for (const role of ['admin', 'developer'] as const) {
      const email = `bench-org-${role}@example.test`;
      const res = await call('POST', `${serviceBase}/users`, token, { email, name: `Bench ${role}`, role, password: USER_PASSWORD, organization_id: orgId });
      expectStatus(`POST /users (${role})`, res, 201);
      people[role] = { id: res.json.id, email };
    }
    const memberSession = await signIn(people.developer.email, USER_PASSWORD);
    const adminSession = await signIn(people.admin.email, USER_PASSWORD);
    sessionOf['projects-member'] = memberSession;
    sessionOf['projects-admin'] = adminSession;
    phase(`created organisation ${orgId} with admin ${people.admin.id} and developer ${people.developer.id}; seeding ${PROJECT_COUNT} projects`);
    const seedStart = Date.now();
    const expected = await seedProjects(dbUrl.toString(), orgId, people.admin.id, people.developer.id);
    phase(
      `seeded ${PROJECT_COUNT} projects, ${PROJECT_COUNT} owner memberships (admin) and ${MEMBER_PROJECT_COUNT} viewer memberships (developer) ` +
        `in ${((Date.now() - seedStart) / 1000).toFixed(1)}s; vacuumed and analyzed`,
    );
    // Each page must be the 20 newest projects the caller may see, with a cursor to the next page.
    for (const target of listTargets) {
      const s = sessionOf[target]!;
      const res = await call('GET', urls[target], s.token);
      expectStatus(`${TARGET_LABEL[target]}`, res, 200);
      const items: { id: string; settings: unknown; organization_id: string }[] = res.json?.items ?? [];
      const want = target === 'projects-member' ? expected.memberPage : expected.adminPage;
      const got = items.map((i) => i.id);
      if (items.length !== PAGE_LIMIT || got.join() !== want.join() || typeof res.json.next_cursor !== 'string') {
        throw new Error(
          `${TARGET_LABEL[target]}: expected the ${PAGE_LIMIT} newest visible projects and a next_cursor, got ${items.length} item(s): ${res.text.slice(0, 300)}`,
        );
      }
      if (items.some((i) => i.organization_id !== orgId || typeof i.settings !== 'object' || i.settings === null)) {
        throw new Error(`${TARGET_LABEL[target]}: unexpected item ${JSON.stringify(items[0])}`);
      }
      phase(`${TARGET_LABEL[target]} answers 200 with ${items.length} items (${res.text.length} bytes)`);
    }
  }

  // 4. Interleaved rounds; the order rotates each round so no target always runs first or last.
  const measurements: Measurement[] = [];
  for (let round = 1; round <= settings.rounds; round++) {
    const order = selectedTargets.map((_, i) => selectedTargets[(i + round - 1) % selectedTargets.length]!);
    for (const target of order) {
      const tag = `round ${round}/${settings.rounds} ${TARGET_LABEL[target].padEnd(LABEL_WIDTH)}`;
      // Access tokens live at most 15 minutes: sign in again (between runs, never during one) before this one expires.
      let session = sessionOf[target]!;
      if (Date.now() + (settings.warmup + settings.duration + 30) * 1000 > session.expiresAt) {
        const renewed = await signIn(session.email, session.password);
        for (const t of selectedTargets) if (sessionOf[t] === session) sessionOf[t] = renewed;
        session = renewed;
        phase(`signed in again as ${session.email}: the access token was about to expire`);
      }
      const headers = { authorization: `Bearer ${session.token}` };
      const connections = connectionsFor(target);
      if (settings.warmup > 0) {
        const w = await load(urls[target], headers, settings.warmup, connections);
        assertAll200(`${tag} warm-up`, w);
      }
      const pid = target === 'raw' ? raw.proc.pid : service.proc.pid;
      const dbBefore = isLocalDb ? await dbBackendCpuUs(admin, dbName) : undefined;
      const cpuBefore = processCpuUs(pid);
      const r = await load(urls[target], headers, settings.duration, connections);
      const cpuAfter = processCpuUs(pid);
      const dbUs = dbCpuDelta(dbBefore, isLocalDb ? await dbBackendCpuUs(admin, dbName) : undefined);
      assertAll200(tag, r);
      const m: Measurement = {
        target,
        round,
        rps: r.requests / r.seconds,
        p50: r.p50Ms,
        p99: r.p99Ms,
        tail: r.tailMs,
        requests: r.requests,
        cpuUsPerReq: cpuBefore !== undefined && cpuAfter !== undefined ? (cpuAfter - cpuBefore) / r.requests : undefined,
        dbCpuUsPerReq: dbUs === undefined ? undefined : dbUs / r.requests,
      };
      measurements.push(m);
      const cpu =
        (m.cpuUsPerReq === undefined ? '' : `  server CPU ${m.cpuUsPerReq.toFixed(0)} µs/req`) +
        (m.dbCpuUsPerReq === undefined ? '' : `  db CPU ${m.dbCpuUsPerReq.toFixed(0)} µs/req`);
      const tail = `(p90 ${m.tail.p90.toFixed(1)}, p99.9 ${m.tail.p999.toFixed(1)}, max ${m.tail.max.toFixed(0)})`;
      phase(`${tag} ${m.rps.toFixed(0).padStart(6)} req/s  p50 ${m.p50.toFixed(1)} ms  p99 ${m.p99.toFixed(1)} ms ${tail}${cpu}  (${m.requests} × 200, ${connections} conns)`);
    }
  }

  // 5. Report.
  const summary = selectedTargets.map((target) => {
    const ms = measurements.filter((m) => m.target === target);
    return {
      target,
      rps: mean(ms.map((m) => m.rps)),
      p50: mean(ms.map((m) => m.p50)),
      p99: mean(ms.map((m) => m.p99)),
      perRound: ms.map((m) => m.rps),
      requests: ms.reduce((a, m) => a + m.requests, 0),
      cpuUsPerReq: ms.every((m) => m.cpuUsPerReq !== undefined) ? mean(ms.map((m) => m.cpuUsPerReq!)) : undefined,
      dbCpuUsPerReq: ms.every((m) => m.dbCpuUsPerReq !== undefined) ? mean(ms.map((m) => m.dbCpuUsPerReq!)) : undefined,
    };
  });
  const rawSummary = summary.find((s) => s.target === 'raw');
  const cpus = os.cpus();
  const lines: string[] = [];
  lines.push('');
  const what = [
    userReadTargets.length > 0 ? 'authenticated single-user read (GET a user by id)' : undefined,
    listTargets.length > 0 ? `a page of ${PAGE_LIMIT} of ${PROJECT_COUNT} projects (GET /projects)` : undefined,
  ]
    .filter(Boolean)
    .join(' and ');
  lines.push(`budapp bench — ${what}, ${new Date().toString()}`);
  lines.push(
    `machine: ${cpus[0]?.model ?? 'unknown CPU'}, ${cpus.length} cores, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM, ` +
      `${os.type()} ${os.release()}; node ${process.version}; PostgreSQL ${pgVersion}`,
  );
  const version = codeVersion();
  if (version) lines.push(`code: ${version}`);
  lines.push(`1-minute load average: ${loadAtStart.toFixed(2)} before the run, ${os.loadavg()[0]!.toFixed(2)} at the end (the end figure includes the bench itself)`);
  lines.push(
    `load: ${settings.loadGenerator}, ${connectionsText}, ${settings.duration}s measured (+${settings.warmup}s warm-up) per target per round, ` +
      `${settings.rounds} round(s) interleaved; figures are the MEAN over rounds`,
  );
  if (listTargets.length > 0) {
    lines.push(
      `projects: one organisation of ${PROJECT_COUNT} projects; member = a developer in ${MEMBER_PROJECT_COUNT} of them (spread over the range), ` +
        `admin = the organisation's admin (sees all); GET /projects?limit=${PAGE_LIMIT}, first page`,
    );
  }
  lines.push('');
  lines.push(
    table(
      ['target', 'conns', 'req/s', 'p50 ms', 'p99 ms', 'vs raw', 'req/s per round', 'server CPU µs/req', 'db CPU µs/req', 'requests (all 200)'],
      summary.map((s) => [
        TARGET_LABEL[s.target],
        String(connectionsFor(s.target)),
        s.rps.toFixed(0),
        s.p50.toFixed(1),
        s.p99.toFixed(1),
        rawSummary ? (s.rps / rawSummary.rps).toFixed(2) : '-',
        s.perRound.map((x) => x.toFixed(0)).join(' / '),
        s.cpuUsPerReq === undefined ? '-' : s.cpuUsPerReq.toFixed(0),
        s.dbCpuUsPerReq === undefined ? '-' : s.dbCpuUsPerReq.toFixed(0),
        String(s.requests),
      ]),
      [false, true, true, true, true, true, true, true, true, true],
    ),
  );
  lines.push('');
  let below = false;
  if (rawSummary) {
    for (const s of summary) {
      if (s.target !== 'rest' && s.target !== 'trpc') continue;
      const ratio = s.rps / rawSummary.rps;
      const ok = ratio >= settings.minRatio;
      below ||= !ok;
      const cpuRatio =
        s.cpuUsPerReq !== undefined && rawSummary.cpuUsPerReq !== undefined
          ? `; by server CPU per request raw/${s.target === 'rest' ? 'REST' : 'tRPC'} = ${(rawSummary.cpuUsPerReq / s.cpuUsPerReq).toFixed(2)}`
          : '';
      lines.push(
        `${s.target === 'rest' ? 'REST/raw' : 'tRPC/raw'} = ${ratio.toFixed(3)}  (req/s; target >= ${settings.minRatio}: ${ok ? 'met' : 'NOT MET'})${cpuRatio}`,
      );
    }
  } else {
    lines.push('(raw target not selected: no ratios)');
  }
  for (const s of summary) {
    if (!isListTarget(s.target)) continue;
    const ok = s.p99 <= settings.listP99Ms;
    below ||= !ok;
    const cpu =
      (s.cpuUsPerReq === undefined ? '' : `, server CPU ${s.cpuUsPerReq.toFixed(0)} µs/req`) +
      (s.dbCpuUsPerReq === undefined ? '' : ` (+ PostgreSQL ${s.dbCpuUsPerReq.toFixed(0)} µs/req)`);
    const vsRaw = rawSummary ? `, req/s ÷ raw single-row req/s = ${(s.rps / rawSummary.rps).toFixed(3)}` : '';
    lines.push(
      `${s.target}: ${s.rps.toFixed(0)} req/s, p50 ${s.p50.toFixed(1)} ms, p99 ${s.p99.toFixed(1)} ms at ${settings.listConnections} connections ` +
        `(target p99 <= ${settings.listP99Ms} ms: ${ok ? 'met' : 'NOT MET'})${cpu}${vsRaw}`,
    );
  }
  lines.push(
    'note: server, raw server and load generator share this machine\'s cores; compare ratios within one run, not absolute figures across machines.',
  );
  process.stdout.write(`${lines.join('\n')}\n\n`);
  if (below && settings.enforce) return 1;
  return 0;
}

main()
  .then(
    async (code) => {
      await cleanup();
      if (settings.cpuProfDir) phase(`CPU profiles written under ${settings.cpuProfDir}`);
      process.exit(code);
    },
    async (err: unknown) => {
      if (interrupted) return; // the signal handler cleans up and exits
      process.stderr.write(`\n[bench] FAILED: ${err instanceof Error ? err.message : String(err)}\n`);
      await cleanup();
      process.exit(1);
    },
  );
