import { spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { bootstrap, type BootstrapResult } from '../src/bootstrap.js';
import { ConfigError, envSchema, loadConfig, type Config } from '../src/config.js';
import type { Database, Db } from '../src/db/client.js';
import { users } from '../src/db/schema/users.js';
import { createDeps } from '../src/deps.js';
import { createLogger } from '../src/lib/logger.js';
import { openTestDatabase } from './support/db.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const newPem = () => generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
const PEM = newPem();
const API_TOKEN = 'k'.repeat(20) + 'Q7v9xZ2mL4pR8sT1'; // 36 characters
/**
 * Every secret production insists on, valid. (AUDIT_SIGNING_KEY is required once the audit signer lands;
 * before that zod simply drops it.) A test below names the ones the first two are refused without.
 */
const PROD_SECRETS = {
  NODE_ENV: 'production',
  JWT_PRIVATE_KEY: PEM,
  APP_API_TOKEN: API_TOKEN,
  AUDIT_SIGNING_KEY: newPem(),
  CREDENTIAL_KEYS_DIR: inject('credentialKeysDir'),
};

const tempDirs: string[] = [];
const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), 'budapp-config-'));
  tempDirs.push(dir);
  return dir;
};
afterAll(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

/** loadConfig must throw a ConfigError whose message names every listed variable. */
function configError(source: Record<string, string | undefined>): ConfigError {
  try {
    loadConfig(source);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(source)}`);
}

function expectRefused(source: Record<string, string | undefined>, ...names: string[]) {
  const err = configError(source);
  for (const name of names) expect(err.message, `${JSON.stringify(source)} → ${err.message}`).toContain(name);
  return err;
}

describe('loadConfig: defaults', () => {
  it('starts with an empty environment: port 9081, PGlite under ./data, rate limiting on', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      env: 'development',
      isProduction: false,
      host: '0.0.0.0',
      port: 9081,
      dataDir: './data',
      database: { kind: 'pglite', dataDir: './data/pglite' },
      logLevel: 'info',
      trustProxy: false,
      rateLimit: { enabled: true, loginPerIp: 20, loginPerAccount: 10, windowSeconds: 60 },
      auth: { issuer: 'budapp', audience: 'budapp', accessTokenTtlSeconds: 900, clockSkewSeconds: 30 },
      bootstrap: { superUserEmail: 'admin@bud.local', defaultOrganizationName: 'Default' },
    });
    expect(config.auth.accessTokenTtlSeconds).toBeLessThanOrEqual(15 * 60);
    expect(config.appApiToken).toBeUndefined();
    expect(config.bootstrap.superUserPassword).toBeUndefined();
  });

  it('reads only the source it is given', () => {
    const previous = process.env.PORT;
    process.env.PORT = '1234';
    try {
      expect(loadConfig({}).port).toBe(9081);
    } finally {
      if (previous === undefined) delete process.env.PORT;
      else process.env.PORT = previous;
    }
  });
});

describe('loadConfig: overrides', () => {
  it('PORT', () => {
    expect(loadConfig({ PORT: '8080' }).port).toBe(8080);
    expect(loadConfig({ PORT: '0' }).port).toBe(0);
    expect(loadConfig({ PORT: '65535' }).port).toBe(65535);
  });

  it('DATA_DIR moves the embedded database and keys', () => {
    const config = loadConfig({ DATA_DIR: '/var/lib/budapp' });
    expect(config.dataDir).toBe('/var/lib/budapp');
    expect(config.database).toEqual({ kind: 'pglite', dataDir: '/var/lib/budapp/pglite' });
  });

  it('DATABASE_URL switches to PostgreSQL with the pool size from DATABASE_POOL_SIZE', () => {
    const url = 'postgres://bud:secret@db.internal:5432/budapp';
    expect(loadConfig({ DATABASE_URL: url, DATABASE_POOL_SIZE: '3' }).database).toEqual({ kind: 'postgres', url, poolSize: 3, readPoolSize: 1, preparedStatements: true });
    expect(loadConfig({ DATABASE_URL: url }).database).toEqual({ kind: 'postgres', url, poolSize: 10, readPoolSize: 1, preparedStatements: true });
    expect(loadConfig({ DATABASE_URL: url, DATABASE_PREPARED_STATEMENTS: 'false' }).database).toMatchObject({ preparedStatements: false });
    expect(loadConfig({ DATABASE_URL: 'postgresql://db/budapp' }).database.kind).toBe('postgres');
  });

  it('an empty DATABASE_URL means the embedded database', () => {
    expect(loadConfig({ DATABASE_URL: '' }).database.kind).toBe('pglite');
    expect(loadConfig({ DATABASE_URL: '   ' }).database.kind).toBe('pglite');
  });

  it('LOG_LEVEL is case-insensitive; booleans accept true/false/1/0/yes/no', () => {
    expect(loadConfig({ LOG_LEVEL: 'DEBUG' }).logLevel).toBe('debug');
    for (const off of ['false', '0', 'no']) expect(loadConfig({ RATE_LIMIT_ENABLED: off }).rateLimit.enabled).toBe(false);
    for (const on of ['true', '1', 'yes']) expect(loadConfig({ RATE_LIMIT_ENABLED: on }).rateLimit.enabled).toBe(true);
    expect(loadConfig({ TRUST_PROXY: 'true' }).trustProxy).toBe(true);
  });

  it('SUPER_USER_EMAIL is lower-cased', () => {
    expect(loadConfig({ SUPER_USER_EMAIL: 'Root@Bud.Example' }).bootstrap.superUserEmail).toBe('root@bud.example');
  });
});

describe('loadConfig: bad values are refused with a ConfigError naming the variable', () => {
  it.each([
    ['PORT', 'abc'],
    ['PORT', '70000'],
    ['PORT', '-1'],
    ['PORT', '80.5'],
    ['DATABASE_URL', 'mysql://x'],
    ['DATABASE_URL', 'budapp'],
    ['DATABASE_POOL_SIZE', '0'],
    ['DATABASE_POOL_SIZE', 'lots'],
    ['RATE_LIMIT_ENABLED', 'maybe'],
    ['TRUST_PROXY', 'sometimes'],
    ['LOG_LEVEL', 'loud'],
    ['NODE_ENV', 'staging'],
    ['SUPER_USER_EMAIL', 'not-an-email'],
    ['ACCESS_TOKEN_TTL_SECONDS', '3600'],
    ['TOKEN_CLOCK_SKEW_SECONDS', '600'],
    ['BODY_LIMIT_BYTES', '10'],
    ['JWT_ISSUER', ''],
  ])('%s=%s', (name, value) => {
    const err = expectRefused({ [name]: value }, name);
    expect(err.name).toBe('ConfigError');
  });

  it('names every bad variable at once', () => {
    const err = expectRefused({ PORT: 'abc', DATABASE_URL: 'mysql://x', RATE_LIMIT_ENABLED: 'maybe', LOG_LEVEL: 'loud' }, 'PORT', 'DATABASE_URL', 'RATE_LIMIT_ENABLED', 'LOG_LEVEL');
    expect(err.message.split('\n').length).toBeGreaterThanOrEqual(5);
  });

  it('does not echo a refused value (a malformed URL may carry a password)', () => {
    const err = expectRefused({ DATABASE_URL: 'mysql://bud:hunter2-secret@db/budapp' }, 'DATABASE_URL');
    expect(err.message).not.toContain('hunter2-secret');
  });

  it.each([
    ['PORT', 'port', 9081],
    ['SHUTDOWN_TIMEOUT_MS', 'shutdownTimeoutMs', 10_000],
    ['TOKEN_CLOCK_SKEW_SECONDS', 'auth.clockSkewSeconds', 30],
  ] as const)('a blank %s means the default or is refused, never 0', (name, path, fallback) => {
    for (const blank of ['', '  ']) {
      let config: Config | undefined;
      try {
        config = loadConfig({ [name]: blank });
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        expect((err as Error).message).toContain(name);
        continue;
      }
      const value = path.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], config);
      expect(value, `${name}=${JSON.stringify(blank)}`).toBe(fallback);
    }
  });
});

describe('loadConfig: production', () => {
  it('refuses to start without the signing key and the service token, naming them', () => {
    const err = expectRefused({ NODE_ENV: 'production' }, 'JWT_PRIVATE_KEY', 'JWT_PRIVATE_KEY_FILE', 'APP_API_TOKEN', 'CREDENTIAL_KEYS_DIR', 'production');
    expect(err.message.split('\n').length).toBeLessThanOrEqual(5);
  });

  it('names only what is missing', () => {
    const noToken = expectRefused({ ...PROD_SECRETS, APP_API_TOKEN: undefined }, 'APP_API_TOKEN');
    expect(noToken.message).not.toContain('JWT_PRIVATE_KEY');
    const noKey = expectRefused({ ...PROD_SECRETS, JWT_PRIVATE_KEY: undefined }, 'JWT_PRIVATE_KEY', 'JWT_PRIVATE_KEY_FILE');
    expect(noKey.message).not.toContain('APP_API_TOKEN');
  });

  it('treats blank secrets as missing', () => {
    expectRefused({ ...PROD_SECRETS, JWT_PRIVATE_KEY: '  ' }, 'JWT_PRIVATE_KEY');
    expectRefused({ ...PROD_SECRETS, APP_API_TOKEN: '' }, 'APP_API_TOKEN');
  });

  it('refuses a short APP_API_TOKEN without echoing it', () => {
    const short = 'S'.repeat(31);
    const err = expectRefused({ ...PROD_SECRETS, APP_API_TOKEN: short }, 'APP_API_TOKEN');
    expect(err.message).not.toContain(short);
    expect(loadConfig({ ...PROD_SECRETS, APP_API_TOKEN: 'S'.repeat(32) }).appApiToken).toBe('S'.repeat(32));
  });

  it('starts with a key (inline or from a file) and a long token', () => {
    const inline = loadConfig(PROD_SECRETS);
    expect(inline.isProduction).toBe(true);
    expect(inline.auth.privateKeyPem).toBe(PEM);
    const file = join(tempDir(), 'key.pem');
    writeFileSync(file, PEM, { mode: 0o600 });
    const fromFile = loadConfig({ ...PROD_SECRETS, JWT_PRIVATE_KEY: undefined, JWT_PRIVATE_KEY_FILE: file });
    expect(fromFile.auth.privateKeyFile).toBe(file);
  });
});

describe('bootstrap (first start)', () => {
  let database: Database;
  const dataDir = tempDir();
  beforeAll(async () => {
    database = await openTestDatabase();
  });
  afterAll(async () => database?.close());

  /** bootstrap(deps) exactly as startServer calls it, on the test database, with config from `env`. */
  async function run(env: Record<string, string>, db?: Db): Promise<BootstrapResult> {
    const deps = await createDeps(loadConfig({ DATA_DIR: dataDir, ...env }), { database, log: createLogger('silent') });
    try {
      return await bootstrap(db ? { ...deps, db } : deps);
    } finally {
      await deps.cache.close();
    }
  }
  const userCount = async () => (await database.db.select({ id: users.id }).from(users)).length;

  /** Runs bootstrap inside a transaction that is always rolled back, so an unexpected success leaves nothing behind. */
  async function runRolledBack(env: Record<string, string>): Promise<unknown> {
    const rollback = new Error('rollback');
    let outcome: unknown;
    await database.db
      .transaction(async (tx) => {
        outcome = await run(env, tx as unknown as Db).then(
          () => undefined,
          (e: unknown) => e,
        );
        throw rollback;
      })
      .catch((e: unknown) => {
        if (e !== rollback) throw e;
      });
    return outcome;
  }

  async function expectBootstrapRefused(env: Record<string, string>, secret?: string) {
    const err = await runRolledBack(env);
    expect(err, `SUPER_USER_PASSWORD=${JSON.stringify(env.SUPER_USER_PASSWORD)} was accepted`).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain('SUPER_USER_PASSWORD');
    if (secret) expect((err as Error).message).not.toContain(secret);
    expect(await userCount()).toBe(0);
  }

  it('in production without SUPER_USER_PASSWORD refuses, naming it, and creates nothing', async () => {
    await expectBootstrapRefused(PROD_SECRETS);
    await expectBootstrapRefused({ ...PROD_SECRETS, SUPER_USER_PASSWORD: '   ' });
  });

  it('refuses a weak SUPER_USER_PASSWORD without echoing it', async () => {
    for (const weak of ['short', 'elevenchars', 'aaaaaaaaaaaaaaaa', 'abababababababab', ' padded-password-1 ', 'x'.repeat(129)]) {
      await expectBootstrapRefused({ ...PROD_SECRETS, SUPER_USER_PASSWORD: weak }, weak.trim());
      await expectBootstrapRefused({ SUPER_USER_PASSWORD: weak }, weak.trim());
    }
  });

  it('refuses a SUPER_USER_PASSWORD that contains the super admin’s email name', async () => {
    await expectBootstrapRefused({ ...PROD_SECRETS, SUPER_USER_EMAIL: 'operator@bud.example', SUPER_USER_PASSWORD: 'operator-2024-pw' }, 'operator-2024-pw');
  });

  it('creates the super admin with a good password, and later starts need no password', async () => {
    expect(await userCount()).toBe(0);
    const first = await run({ ...PROD_SECRETS, SUPER_USER_PASSWORD: 'a-Strong-and-long-passphrase-9' });
    expect(first.generatedPassword).toBeUndefined();
    expect(await userCount()).toBe(1);
    const again = await run(PROD_SECRETS);
    expect(again).toEqual({ organizationId: first.organizationId, superUserId: first.superUserId });
    expect(await userCount()).toBe(1);
  });
});

describe('the real process', () => {
  interface Exit {
    code: number | null;
    signal: NodeJS.Signals | null;
    stdout: string;
    stderr: string;
  }
  const children = new Set<ReturnType<typeof spawn>>();
  afterAll(() => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });

  /** Runs `node --import tsx src/main.ts` with only the given environment (nothing inherited but PATH/HOME). */
  function runMain(env: Record<string, string>): Promise<Exit> {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? tmpdir(), ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (chunk) => (stdout += chunk));
    child.stderr!.on('data', (chunk) => (stderr += chunk));
    return new Promise((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    });
  }

  function expectCleanFailure(exit: Exit, ...names: string[]) {
    expect(exit.code, exit.stderr).toBe(1);
    expect(exit.signal).toBeNull();
    const message = exit.stderr.trim();
    expect(message).toMatch(/^budapp: /);
    for (const name of names) expect(message).toContain(name);
    expect(message).not.toContain('    at ');
    expect(message).not.toMatch(/ConfigError|ZodError|node:internal/);
    expect(message.split('\n').length, message).toBeLessThanOrEqual(6);
  }

  it('NODE_ENV=production without secrets exits 1 with a short message naming them, and touches nothing', async () => {
    const dataDir = tempDir();
    const exit = await runMain({ NODE_ENV: 'production', DATA_DIR: dataDir });
    expectCleanFailure(exit, 'JWT_PRIVATE_KEY', 'JWT_PRIVATE_KEY_FILE', 'APP_API_TOKEN');
    expect(exit.stdout).toBe('');
    expect(readdirSync(dataDir)).toEqual([]);
  }, 60_000);

  it('a malformed variable exits 1 naming it', async () => {
    const exit = await runMain({ PORT: 'abc', DATA_DIR: tempDir() });
    expectCleanFailure(exit, 'PORT');
  }, 60_000);

  it('production with secrets but no SUPER_USER_PASSWORD exits 1 naming it (first start)', async () => {
    const dataDir = tempDir();
    const exit = await runMain({ ...PROD_SECRETS, DATA_DIR: dataDir, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'warn' });
    expectCleanFailure(exit, 'SUPER_USER_PASSWORD');
    expect(exit.stdout).not.toContain('listening');
  }, 120_000);
});

describe('documentation lists every variable', () => {
  // README.md and .env.sample are written by hand; these fail until both exist and are complete.
  const names = Object.keys(envSchema.shape);
  const read = (file: string) => {
    const path = join(ROOT, file);
    expect(existsSync(path), `${file} must exist at the repository root`).toBe(true);
    return readFileSync(path, 'utf8');
  };

  it('envSchema is not empty', () => {
    expect(names.length).toBeGreaterThan(20);
    expect(names).toContain('DATABASE_URL');
  });

  it('README.md names every variable of envSchema', () => {
    const readme = read('README.md');
    const missing = names.filter((name) => !new RegExp(`\\b${name}\\b`).test(readme));
    expect(missing, 'variables missing from README.md').toEqual([]);
  });

  it('.env.sample has a line (possibly commented out) for every variable of envSchema, and no others', () => {
    const sample = read('.env.sample');
    const listed = new Set([...sample.matchAll(/^[ \t]*#?[ \t]*([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]!));
    const missing = names.filter((name) => !listed.has(name));
    expect(missing, 'variables missing from .env.sample').toEqual([]);
    const unknown = [...listed].filter((name) => !names.includes(name));
    expect(unknown, 'variables in .env.sample that the service does not read').toEqual([]);
  });
});
