/**
 * Summarises a V8 .cpuprofile (from `BENCH_CPU_PROF=<dir> npm run bench`) as text: busy time by package,
 * then the top functions by self time and by inclusive time. With --under, the busy time spent under
 * (inclusive of) each frame whose label contains the text, and the call paths leading to it.
 *
 *   npx tsx bench/profile-summary.ts <file.cpuprofile> [--top 25] [--under "get body @hono"]...
 *
 * The profile covers the whole life of the process (start-up included); busy time excludes idle.
 */
import { readFileSync } from 'node:fs';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0); // piped into head
  throw err;
});

const args = process.argv.slice(2);
let file: string | undefined;
let top = 25;
const unders: string[] = [];
for (let i = 0; i < args.length; i++) {
  const a = args[i]!;
  if (a === '--top') top = Number(args[++i]);
  else if (a === '--under') unders.push(args[++i] ?? '');
  else file ??= a;
}
if (!file || !Number.isFinite(top)) {
  process.stderr.write('usage: tsx bench/profile-summary.ts <file.cpuprofile> [--top N] [--under text]...\n');
  process.exit(2);
}
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;

const byId = new Map<number, ProfileNode>();
const parent = new Map<number, number>();
for (const n of profile.nodes) {
  byId.set(n.id, n);
  for (const c of n.children ?? []) parent.set(c, n.id);
}

const IDLE = new Set(['(idle)', '(program)', '(root)']);

function where(cf: CallFrame): string {
  const url = cf.url.replace(/^file:\/\//, '');
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  if (url.includes('/src/')) return `src/${url.split('/src/')[1]!.split('/')[0]}`;
  if (url.includes('/bench/')) return 'bench';
  if (url.startsWith('node:') || url === '') return cf.functionName === '(garbage collector)' ? '(gc)' : 'node internals / native';
  return url;
}

function label(cf: CallFrame): string {
  const url = cf.url.replace(/^file:\/\//, '').replace(/^.*node_modules\//, '').replace(/^.*\/(src|bench)\//, '$1/');
  return `${cf.functionName || '(anonymous)'} ${url ? `${url}:${cf.lineNumber + 1}` : ''}`.trim();
}

const under = new Map<string, number>();
const underPaths = new Map<string, Map<string, number>>();
const self = new Map<string, number>();
const inclusive = new Map<string, number>();
const byPackage = new Map<string, number>();
let busy = 0;
let idle = 0;
const add = (m: Map<string, number>, k: string, v: number) => m.set(k, (m.get(k) ?? 0) + v);

for (let i = 0; i < profile.samples.length; i++) {
  const dt = profile.timeDeltas[i] ?? 0;
  const node = byId.get(profile.samples[i]!);
  if (!node) continue;
  if (IDLE.has(node.callFrame.functionName)) {
    idle += dt;
    continue;
  }
  busy += dt;
  add(self, label(node.callFrame), dt);
  add(byPackage, where(node.callFrame), dt);
  const seen = new Set<string>();
  const stack: string[] = [];
  for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
    const cf = byId.get(id)!.callFrame;
    if (IDLE.has(cf.functionName)) continue;
    const key = label(cf);
    stack.push(key);
    if (seen.has(key)) continue;
    seen.add(key);
    add(inclusive, key, dt);
  }
  for (const text of unders) {
    // The outermost matching frame, and the three frames that called it.
    let at = -1;
    for (let i = stack.length - 1; i >= 0; i--) if (stack[i]!.includes(text)) { at = i; break; }
    if (at < 0) continue;
    add(under, text, dt);
    const paths = underPaths.get(text) ?? new Map<string, number>();
    underPaths.set(text, paths);
    add(paths, stack.slice(at, at + 4).join('  <-  '), dt);
  }
}

const ms = (us: number) => `${(us / 1000).toFixed(0).padStart(7)} ms`;
const pct = (us: number) => `${((100 * us) / busy).toFixed(1).padStart(5)}%`;
const print = (title: string, m: Map<string, number>, n: number) => {
  process.stdout.write(`\n${title}\n`);
  for (const [k, v] of [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, n)) process.stdout.write(`${ms(v)} ${pct(v)}  ${k}\n`);
};

process.stdout.write(`${file}\nbusy ${ms(busy)}, idle ${ms(idle)} (percentages are of busy time)\n`);
print('self time by package', byPackage, 30);
print(`top ${top} functions by self time`, self, top);
print(`top ${top} functions by inclusive time`, inclusive, top);
for (const text of unders) {
  const total = under.get(text) ?? 0;
  process.stdout.write(`\nunder "${text}": ${ms(total)} ${pct(total)}\n`);
  for (const [k, v] of [...(underPaths.get(text) ?? new Map<string, number>()).entries()].sort((a, b) => b[1] - a[1]).slice(0, 6)) {
    process.stdout.write(`${ms(v)} ${pct(v)}  ${k}\n`);
  }
}
