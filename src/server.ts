import { serve, type ServerType } from '@hono/node-server';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createApp } from './app.js';
import { bootstrap } from './bootstrap.js';
import type { Config } from './config.js';
import { closeDeps, createDeps, type Deps, type DepsOverrides } from './deps.js';
import { checkpointMovedChains } from './domains/audit/chain.js';

/** Signs a checkpoint for every chain that moved, every AUDIT_CHECKPOINT_INTERVAL_SECONDS and once at shutdown. */
function startCheckpointer(deps: Deps) {
  const run = async () => {
    try {
      const written = await checkpointMovedChains(deps.db, deps.auditSigner, deps.clock.now());
      if (written > 0) deps.log.debug({ checkpoints: written }, 'audit checkpoints written');
    } catch (err) {
      deps.log.error({ err }, 'audit checkpointing failed');
    }
  };
  const seconds = deps.config.audit.checkpointIntervalSeconds;
  const timer = seconds > 0 ? setInterval(run, seconds * 1000) : undefined;
  timer?.unref();
  return {
    async stop() {
      if (timer) clearInterval(timer);
      await run();
    },
  };
}

export interface RunningServer {
  deps: Deps;
  port: number;
  /** Stops accepting, lets in-flight requests finish (up to the shutdown timeout), closes the database. */
  stop(): Promise<void>;
}

/** Composition root: deps → migrations → first-start bootstrap → HTTP server. */
export async function startServer(config: Config, overrides: DepsOverrides = {}): Promise<RunningServer> {
  const deps = await createDeps(config, overrides);
  await deps.database.migrate();
  const boot = await bootstrap(deps);
  if (boot.generatedPassword) {
    process.stdout.write(
      `\n  First start: super admin ${config.bootstrap.superUserEmail} created with the generated password\n\n` +
        `      ${boot.generatedPassword}\n\n  It is shown only this once. Set SUPER_USER_PASSWORD to choose it yourself.\n\n`,
    );
  }
  const app = createApp(deps);
  const checkpointer = startCheckpointer(deps);
  deps.auditChainer.startSweeping(config.audit.chainSweepMs);
  const server: ServerType = await new Promise((resolve) => {
    const s = serve({ fetch: app.fetch, port: config.port, hostname: config.host }, () => resolve(s));
  });
  const port = (server.address() as AddressInfo).port;
  // Responses not yet sent, so shutdown can tell their keep-alive connections to close after them.
  const unanswered = new Set<ServerResponse>();
  let draining = false;
  server.on('request', (_req: IncomingMessage, res: ServerResponse) => {
    if (draining) res.shouldKeepAlive = false;
    unanswered.add(res);
    res.once('close', () => unanswered.delete(res));
  });
  deps.log.info({ port, host: config.host }, `budapp listening on http://${config.host}:${port}`);

  let stopping: Promise<void> | undefined;
  return {
    deps,
    port,
    stop() {
      stopping ??= (async () => {
        deps.log.info('shutting down: no new connections, finishing in-flight requests');
        draining = true;
        for (const res of unanswered) res.shouldKeepAlive = false;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            deps.log.warn({ timeout_ms: config.shutdownTimeoutMs }, 'shutdown timeout reached; closing remaining connections');
            (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
          }, config.shutdownTimeoutMs);
          timer.unref();
          server.close(() => {
            clearTimeout(timer);
            resolve();
          });
          (server as unknown as { closeIdleConnections?: () => void }).closeIdleConnections?.();
        });
        await deps.auditChainer.stop().catch((err: unknown) => deps.log.error({ err }, 'audit chaining at shutdown failed; the records stay pending'));
        await checkpointer.stop();
        await closeDeps(deps);
        deps.log.info('shutdown complete');
      })();
      return stopping;
    },
  };
}
