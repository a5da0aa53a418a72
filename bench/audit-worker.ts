/**
 * Child process of bench/audit.ts: runs ONE audit operation through the real service code, in a process of
 * its own so its peak RSS (process.resourceUsage().maxRSS) belongs to that operation alone.
 *
 *   BENCH_AUDIT_MODE   verify | export
 *   DATABASE_URL, DATA_DIR            the bench database and the data dir holding the audit signing key
 *   BENCH_ORG_ID, BENCH_ADMIN_ID      the organisation whose chain is read, and its admin (the actor)
 *
 * Progress goes to stderr; the outcome is one `RESULT {json}` line on stdout.
 */
import { performance } from 'node:perf_hooks';
import { closeDeps } from '../src/deps.js';
import { eq } from 'drizzle-orm';
import { auditChainHeads } from '../src/db/schema/audit.js';
import { chainOf } from '../src/domains/audit/chain.js';
import { exportAudit, ExportInput } from '../src/domains/audit/export.js';
import { verifyChain } from '../src/domains/audit/service.js';
import { adminCtx, benchDeps, mb, RESULT_PREFIX } from './audit-common.js';

const need = (name: string) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is required`);
  return v;
};

const mode = need('BENCH_AUDIT_MODE');
const who = { organizationId: need('BENCH_ORG_ID'), adminId: need('BENCH_ADMIN_ID') };
const say = (msg: string) => process.stderr.write(`${msg}\n`);
const rssMb = () => mb(process.memoryUsage().rss).toFixed(0);

const deps = await benchDeps({ databaseUrl: need('DATABASE_URL'), dataDir: need('DATA_DIR'), poolSize: 10 });
const ctx = adminCtx(deps, who);
const chainId = chainOf(who.organizationId);
await deps.database.ping();
const [headRow] = await deps.db.select().from(auditChainHeads).where(eq(auditChainHeads.chainId, chainId));
const headBefore = headRow?.seq ?? 0;
const rssBefore = process.memoryUsage().rss;
const cpuBefore = process.cpuUsage();

let result: Record<string, unknown>;
if (mode === 'verify') {
  const started = performance.now();
  const heartbeat = setInterval(() => say(`verifying… ${((performance.now() - started) / 1000).toFixed(0)}s, rss ${rssMb()} MB`), 2_000);
  const out = await verifyChain(ctx, {});
  clearInterval(heartbeat);
  const seconds = (performance.now() - started) / 1000;
  result = {
    mode,
    seconds,
    headBefore,
    ok: out.ok,
    checked: out.checked,
    checkpointsChecked: out.checkpoints_checked,
    firstFailure: out.first_failure,
    recordsPerSecond: out.checked / seconds,
  };
} else if (mode === 'export') {
  const started = performance.now();
  const { stream } = await exportAudit(ctx, ExportInput.parse({ format: 'ndjson' }));
  const PREFIX = Buffer.from('{"type":"record",');
  const TAIL = 64 * 1024;
  let bytes = 0;
  let lines = 0;
  let recordLines = 0;
  let atLineStart = true;
  let matched = 0;
  let matching = true;
  let tail = Buffer.alloc(0);
  let nextReport = 100_000;
  const reader = stream.getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    const buf = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    bytes += buf.length;
    let pos = 0;
    while (pos < buf.length) {
      if (atLineStart) {
        // Compare the start of the line with the record prefix, possibly across chunk boundaries.
        while (matched < PREFIX.length && pos < buf.length) {
          if (buf[pos] !== PREFIX[matched]) {
            matching = false;
            matched = PREFIX.length;
            break;
          }
          matched++;
          pos++;
        }
        if (matched < PREFIX.length) break;
        atLineStart = false;
      }
      const nl = buf.indexOf(10, pos);
      if (nl === -1) break;
      lines++;
      if (matching) recordLines++;
      pos = nl + 1;
      atLineStart = true;
      matched = 0;
      matching = true;
    }
    tail = buf.length >= TAIL ? Buffer.from(buf.subarray(buf.length - TAIL)) : Buffer.concat([tail, buf]).subarray(-TAIL);
    if (lines >= nextReport) {
      say(`exported ${lines.toLocaleString('en-US')} lines, ${mb(bytes).toFixed(0)} MB, ${((performance.now() - started) / 1000).toFixed(1)}s, rss ${rssMb()} MB`);
      nextReport += 100_000;
    }
  }
  const seconds = (performance.now() - started) / 1000;
  const text = tail.toString('utf8');
  if (!text.endsWith('\n')) throw new Error('the export does not end with a newline');
  const lastLine = text.slice(0, -1).split('\n').pop()!;
  let manifest: Record<string, unknown> = {};
  try {
    manifest = JSON.parse(lastLine) as Record<string, unknown>;
  } catch {
    throw new Error(`the last line is not JSON: ${lastLine.slice(0, 200)}`);
  }
  result = {
    mode,
    seconds,
    headBefore,
    bytes,
    lines,
    recordLines,
    trailingPartialLine: !atLineStart,
    manifestType: manifest.type,
    manifestCount: manifest.count,
    manifestLastSeq: manifest.last_seq,
    recordsPerSecond: recordLines / seconds,
  };
} else {
  throw new Error(`BENCH_AUDIT_MODE must be verify or export, got ${mode}`);
}

const op = process.cpuUsage(cpuBefore);
result.opCpuSeconds = (op.user + op.system) / 1e6;
result.recordsPerCpuSecond = (mode === 'verify' ? (result.checked as number) : (result.recordLines as number)) / (result.opCpuSeconds as number);
await closeDeps(deps);
const usage = process.resourceUsage();
result.rssBeforeMb = mb(rssBefore);
result.maxRssMb = usage.maxRSS / 1024; // maxRSS is in kilobytes
result.cpuUserSeconds = usage.userCPUTime / 1e6;
result.cpuSystemSeconds = usage.systemCPUTime / 1e6;
process.stdout.write(`${RESULT_PREFIX}${JSON.stringify(result)}\n`);
