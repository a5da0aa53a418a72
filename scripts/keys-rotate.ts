/**
 * Re-wraps every credential data key under the current key-encryption key (payloads are never decrypted).
 *   npm run keys:rotate                 # rewrap under the current key (CREDENTIAL_CURRENT_KEY_ID or CURRENT)
 *   npm run keys:rotate -- --generate   # first generate a new key into CREDENTIAL_KEYS_DIR and make it current
 * Resumable: run it again after an interruption. With the embedded PGlite, stop the service first (PGlite
 * takes one process at a time); on PostgreSQL it can run beside the service.
 */
import { loadConfig, ConfigError } from '../src/config.js';
import { closeDeps, createDeps } from '../src/deps.js';
import { rewrapAllParallel } from '../src/domains/credentials/rewrap.js';
import { createLogger } from '../src/lib/logger.js';
import { generateKek, Keyring } from '../src/platform/crypto/keyring.js';

async function main(argv: string[]) {
  const config = loadConfig();
  if (argv.includes('--generate')) {
    const id = generateKek(config.credentials.keysDir, true);
    process.stdout.write(`generated key-encryption key ${id} in ${config.credentials.keysDir} and made it current\n`);
    if (config.credentials.currentKeyId) process.stdout.write(`note: CREDENTIAL_CURRENT_KEY_ID=${config.credentials.currentKeyId} overrides CURRENT; set it to ${id}\n`);
  }
  const deps = await createDeps(config, { log: createLogger('warn') });
  try {
    await deps.database.migrate();
    deps.keyring = Keyring.load(config.credentials.keysDir, { currentKeyId: config.credentials.currentKeyId, generateIfMissing: false });
    const started = performance.now();
    const result = await rewrapAllParallel(
      { db: deps.db, clock: deps.clock, ids: deps.ids, log: deps.log, deps, actor: null, requestId: 'keys-rotate', ip: 'unknown', userAgent: 'keys:rotate' },
      {
        onProgress: (p) => {
          const rate = Math.round(p.rewrapped / ((performance.now() - started) / 1000));
          process.stdout.write(`  rewrapped ${p.rewrapped}, remaining ${p.remaining}${p.missingKey ? `, ${p.missingKey} need re-entry` : ''} (${rate}/s)\n`);
        },
      },
    );
    process.stdout.write(
      `done: ${result.rewrapped} data keys now under ${deps.keyring.currentId}; ${result.remaining} remaining` +
        (result.missingKey ? `; ${result.missingKey} credentials need re-entry (their key is not loaded)` : '') +
        `\n${result.remaining === 0 ? 'Keys other than the current one can now be removed from the keys directory.\n' : ''}`,
    );
  } finally {
    await closeDeps(deps);
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`keys:rotate: ${err instanceof ConfigError || err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
