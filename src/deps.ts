import type { Config } from './config.js';
import { openDatabase, type Database, type Db } from './db/client.js';
import { systemClock, type Clock } from './lib/clock.js';
import { uuidV7Generator, type IdGenerator } from './lib/ids.js';
import { createLogger, type Logger } from './lib/logger.js';
import { createRateLimiter, type RateLimiter } from './lib/rate-limit.js';
import type { Cache } from './platform/cache/cache.js';
import { createMemoryCache } from './platform/cache/memory.js';
import { LocalTokenIssuer, loadSigningKey } from './platform/identity/local-issuer.js';
import { createAuthenticator, type Authenticator, type TokenVerifier } from './domains/auth/authenticator.js';
import { resolveKeycloakUser } from './domains/auth/keycloak.js';
import { KeycloakClient } from './platform/identity/keycloak.js';
import { Keyring } from './platform/crypto/keyring.js';
import { loadAuditSigner, type AuditSigner } from './platform/audit/signer.js';
import { AuditChainer } from './domains/audit/chainer.js';

/** Everything the service needs from the outside world, wired once by createDeps and passed down explicitly. */
export interface Deps {
  config: Config;
  database: Database;
  db: Db;
  clock: Clock;
  ids: IdGenerator;
  log: Logger;
  cache: Cache;
  rateLimiter: RateLimiter;
  tokens: LocalTokenIssuer;
  authenticator: Authenticator;
  auditSigner: AuditSigner;
  /** Moves committed audit records from audit_pending into their hash chains. */
  auditChainer: AuditChainer;
  /** The credentials vault's key-encryption keys. */
  keyring: Keyring;
  /** Set when KEYCLOAK_URL is: Keycloak is the identity provider (tokens is then unused). */
  keycloak?: KeycloakClient;
}

export interface DepsOverrides {
  database?: Database;
  clock?: Clock;
  log?: Logger;
  cache?: Cache;
}

export async function createDeps(config: Config, overrides: DepsOverrides = {}): Promise<Deps> {
  const clock = overrides.clock ?? systemClock;
  const log = overrides.log ?? createLogger(config.logLevel);
  const database =
    overrides.database ??
    (await openDatabase(
      config.database.kind === 'postgres'
        ? config.database
        : { kind: 'pglite', dataDir: config.database.dataDir },
    ));
  const cache = overrides.cache ?? createMemoryCache(clock);
  const signingKey = await loadSigningKey({
    privateKeyPem: config.auth.privateKeyPem,
    privateKeyFile: config.auth.privateKeyFile,
    dataDir: config.dataDir,
  });
  const tokens = new LocalTokenIssuer(signingKey, config.auth, clock);
  const auditSigner = await loadAuditSigner({
    pem: config.audit.signingKeyPem,
    file: config.audit.signingKeyFile,
    dataDir: config.dataDir,
    publicKeysDir: config.audit.publicKeysDir,
  });
  const partial = {
    config,
    database,
    db: database.db,
    clock,
    ids: uuidV7Generator(clock),
    log,
    cache,
    rateLimiter: createRateLimiter(cache, config.rateLimit.enabled),
    tokens,
    auditSigner,
    auditChainer: new AuditChainer({ db: database.db, signer: auditSigner, clock, log, checkpointEvery: config.audit.checkpointEvery }),
    keyring: Keyring.load(config.credentials.keysDir, { currentKeyId: config.credentials.currentKeyId, generateIfMissing: config.credentials.generateIfMissing }),
  };
  const keycloak = config.keycloak ? new KeycloakClient(config.keycloak, clock) : undefined;
  const verifier: TokenVerifier = keycloak
    ? { verify: (token) => keycloak.verifyAccessToken(token), resolveUser: (token) => resolveKeycloakUser(deps, token) }
    : { verify: (token) => tokens.verify(token), resolveUser: async (token) => token.subject };
  const deps: Deps = { ...partial, keycloak, authenticator: createAuthenticator({ ...partial, verifier }) };
  log.info({ adapter: 'database', implementation: database.describe }, 'adapter selected');
  log.info(
    {
      adapter: 'identity',
      implementation: keycloak
        ? `Keycloak over OIDC at ${config.keycloak!.issuerUrl} (client ${config.keycloak!.clientId}; password grant ${config.keycloak!.passwordGrant ? 'on' : 'off'})`
        : `local issuer (EdDSA, kid ${signingKey.kid}, key from ${signingKey.origin})`,
    },
    'adapter selected',
  );
  log.info({ adapter: 'audit_signer', implementation: `Ed25519 ${auditSigner.keyId} (key from ${auditSigner.origin})` }, 'adapter selected');
  log.info({ adapter: 'vault_keys', implementation: `RSA-OAEP key-encryption keys in ${config.credentials.keysDir} (current ${partial.keyring.currentId}, ${partial.keyring.ids.length} loaded)` }, 'adapter selected');
  log.info({ adapter: 'cache', implementation: cache.kind }, 'adapter selected');
  log.info(
    { adapter: 'rate_limit', implementation: config.rateLimit.enabled ? `fixed window over ${cache.kind}` : 'disabled (RATE_LIMIT_ENABLED=false)' },
    'adapter selected',
  );
  return deps;
}

export async function closeDeps(deps: Deps): Promise<void> {
  await deps.auditChainer.stop().catch((err: unknown) => deps.log.error({ err }, 'audit chaining at shutdown failed; the records stay pending'));
  await deps.cache.close();
  await deps.database.close();
}
