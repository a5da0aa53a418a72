import { ConfigError, loadConfig } from './config.js';
import { startServer } from './server.js';

async function main() {
  const config = loadConfig();
  const server = await startServer(config);
  const onSignal = (signal: NodeJS.Signals) => {
    server.deps.log.info({ signal }, 'signal received');
    server.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        server.deps.log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
}

main().catch((err: unknown) => {
  if (err instanceof ConfigError) {
    process.stderr.write(`budapp: ${err.message}\n`);
  } else {
    process.stderr.write(`budapp: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  }
  process.exit(1);
});
