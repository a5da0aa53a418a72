/**
 * Shared by bench/audit.ts (the orchestrator) and bench/audit-worker.ts (the child that runs the verifier
 * and the export): how a bench process builds its deps and a service ctx for an organisation admin.
 */
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { loadConfig } from '../src/config.js';
import { createDeps, type Deps } from '../src/deps.js';
import type { ActorCtx } from '../src/domains/service-ctx.js';
import { machineBusySeconds, postgresCpu } from './common.js';

export interface BenchDepsOptions {
  databaseUrl: string;
  dataDir: string;
  poolSize: number;
}

/** The service's own deps (config, postgres.js pool, audit signer from DATA_DIR/keys), quiet logs. */
export function benchDeps(o: BenchDepsOptions): Promise<Deps> {
  const config = loadConfig({
    NODE_ENV: 'development',
    DATA_DIR: o.dataDir,
    DATABASE_URL: o.databaseUrl,
    DATABASE_POOL_SIZE: String(o.poolSize),
    LOG_LEVEL: 'warn',
    RATE_LIMIT_ENABLED: 'false',
  });
  return createDeps(config);
}

export interface OrgAdmin {
  organizationId: string;
  adminId: string;
}

/** What a request handled for this organisation's admin hands to a service. */
export function adminCtx(deps: Deps, who: OrgAdmin, requestId: string = randomUUID()): ActorCtx {
  return {
    db: deps.db,
    clock: deps.clock,
    ids: deps.ids,
    log: deps.log,
    deps,
    actor: { userId: who.adminId, organizationId: who.organizationId, role: 'admin', jti: `bench-${requestId}`, exp: Math.floor(Date.now() / 1000) + 3600 },
    requestId,
    ip: '10.20.30.40',
    userAgent: 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36 audit-bench',
  };
}

export const mb = (bytes: number) => bytes / (1024 * 1024);

/** Lines a worker prints on stdout: progress as text, the outcome as `RESULT <json>`. */
export const RESULT_PREFIX = 'RESULT ';

// ------------------------------------------------------------------------------------ CPU accounting



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
