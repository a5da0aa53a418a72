import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

/** The node flags of package.json's start script (`node <flags> dist/main.js`): benches run what ships. */
export function startScriptFlags(root: string): string[] {
  const start = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: { start: string } }).scripts.start;
  const words = start.trim().split(/\s+/);
  if (words[0] !== 'node' || words.at(-1) !== 'dist/main.js') throw new Error(`package.json's start script is not "node <flags> dist/main.js": ${start}`);
  return words.slice(1, -1);
}

/** A numeric environment variable with a default and a lower bound; anything else stops the bench. */
export function envNumber(name: string, fallback: number, min: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min) throw new Error(`${name} must be a number >= ${min}, got ${JSON.stringify(raw)}`);
  return n;
}

/** Clean-ups run once, newest first; each failure is reported under `label` and the rest still run. */
export function createCleanups(label: string) {
  const cleanups: { name: string; fn: () => Promise<void> | void }[] = [];
  let cleaning: Promise<void> | undefined;
  return {
    onCleanup(name: string, fn: () => Promise<void> | void) {
      cleanups.push({ name, fn });
    },
    cleanup(): Promise<void> {
      cleaning ??= (async () => {
        for (const { name, fn } of cleanups.reverse()) {
          try {
            await fn();
          } catch (err) {
            process.stderr.write(`[${label}] clean-up "${name}" failed: ${err instanceof Error ? err.message : String(err)}\n`);
          }
        }
      })();
      return cleaning;
    },
  };
}

const TICKS = 100; // USER_HZ on Linux

/** Busy CPU seconds of the whole machine since boot (from /proc/stat). */
export function machineBusySeconds(): number {
  try {
    const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    return (user + nice + system + irq + softirq + steal) / TICKS;
  } catch {
    return 0;
  }
}

/** CPU seconds of every PostgreSQL server process, by pid. */
export function postgresCpu(): Map<string, number> {
  const out = new Map<string, number>();
  let pids: string[] = [];
  try {
    pids = readdirSync('/proc').filter((p) => /^\d+$/.test(p));
  } catch {
    return out;
  }
  for (const pid of pids) {
    try {
      const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const close = text.lastIndexOf(')');
      if (text.slice(text.indexOf('(') + 1, close) !== 'postgres') continue;
      const fields = text.slice(close + 2).split(' ');
      // After "pid (comm) ", fields[0] is the state (field 3); utime and stime are fields 14 and 15.
      out.set(pid, (Number(fields[11]) + Number(fields[12])) / TICKS);
    } catch {
      /* exited meanwhile */
    }
  }
  return out;
}

export interface CpuShare {
  seconds: number;
  /** Percent of one core over the interval: the bench processes, the PostgreSQL server, everything else. */
  self: number;
  postgres: number;
  other: number;
  cores: number;
}

/**
 * Where the machine's CPU goes while a phase runs (Linux /proc; zeros elsewhere). PostgreSQL backends are
 * sampled twice a second so connections that close during the phase still count. "Other" is what the
 * machine spent beyond the bench and PostgreSQL: a compiler, another benchmark, a neighbour container.
 */
export function startCpuMonitor(cores: number) {
  const at = performance.now();
  const busy0 = machineBusySeconds();
  const self0 = process.cpuUsage();
  let last = postgresCpu();
  let pg = 0;
  const sample = () => {
    const now = postgresCpu();
    for (const [pid, secs] of now) pg += Math.max(0, secs - (last.get(pid) ?? 0));
    last = now;
  };
  const timer = setInterval(sample, 500);
  timer.unref();
  return {
    /** `childSeconds`: CPU our own child processes used meanwhile (they report it themselves). */
    stop(childSeconds = 0): CpuShare {
      clearInterval(timer);
      sample();
      const seconds = (performance.now() - at) / 1000;
      const u = process.cpuUsage(self0);
      const self = (u.user + u.system) / 1e6 + childSeconds;
      const other = Math.max(0, machineBusySeconds() - busy0 - self - pg);
      const pct = (x: number) => (seconds > 0 ? (100 * x) / seconds : 0);
      return { seconds, self: pct(self), postgres: pct(pg), other: pct(other), cores };
    },
  };
}

export const formatCpu = (c: CpuShare) => `CPU: bench ${c.self.toFixed(0)}%, postgres ${c.postgres.toFixed(0)}%, other ${c.other.toFixed(0)}% (of ${c.cores * 100}%)`;
