/**
 * Shared by bench/audit.ts (the orchestrator) and bench/audit-worker.ts (the child that runs the verifier
 * and the export): how a bench process builds its deps and a service ctx for an organisation admin.
 */
import { randomUUID } from 'node:crypto';
import { loadConfig } from '../src/config.js';
import { createDeps, type Deps } from '../src/deps.js';
import type { ActorCtx } from '../src/domains/service-ctx.js';

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
