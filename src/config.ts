import { z } from 'zod';

/** Raised for any configuration problem; main.ts prints the message and exits without a stack trace. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

const bool = (fallback: boolean) =>
  z
    .enum(['true', 'false', '1', '0', 'yes', 'no'], { error: 'must be true or false' })
    .optional()
    .transform((v) => (v === undefined ? fallback : v === 'true' || v === '1' || v === 'yes'));

/** A blank value (`PORT=`) means "not set", never 0. */
const blankAsUnset = (v: unknown) => (typeof v === 'string' && v.trim() === '' ? undefined : v);

const int = (fallback: number, min: number, max: number) =>
  z.preprocess(blankAsUnset, z.coerce.number({ error: 'must be a number' }).int('must be an integer').min(min).max(max).default(fallback));

const optionalText = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v));

/**
 * Every environment variable the service reads. The README table and .env.sample list the same names;
 * test/config.test.ts keeps the three in step.
 */
export const envSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  HOST: z.string().default('0.0.0.0'),
  PORT: int(9081, 0, 65535),
  DATA_DIR: z.string().min(1).default('./data'),
  DATABASE_URL: optionalText.pipe(
    z
      .string()
      .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL')
      .optional(),
  ),
  DATABASE_POOL_SIZE: int(10, 1, 200),
  DATABASE_READ_POOL_SIZE: int(1, 1, 50),
  DATABASE_PREPARED_STATEMENTS: bool(true),
  LOG_LEVEL: z
    .string()
    .default('info')
    .transform((v) => v.toLowerCase())
    .pipe(z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])),
  BODY_LIMIT_BYTES: int(1024 * 1024, 1024, 100 * 1024 * 1024),
  SHUTDOWN_TIMEOUT_MS: int(10_000, 0, 600_000),
  TRUST_PROXY: bool(false),

  JWT_ISSUER: z.string().min(1).default('budapp'),
  JWT_AUDIENCE: z.string().min(1).default('budapp'),
  JWT_PRIVATE_KEY: optionalText,
  JWT_PRIVATE_KEY_FILE: optionalText,
  ACCESS_TOKEN_TTL_SECONDS: int(900, 30, 900),
  REFRESH_TOKEN_TTL_SECONDS: int(7 * 24 * 3600, 300, 90 * 24 * 3600),
  TOKEN_CLOCK_SKEW_SECONDS: int(30, 0, 120),

  SUPER_USER_EMAIL: z.email('must be an email address').default('admin@bud.local'),
  SUPER_USER_PASSWORD: optionalText,
  DEFAULT_ORGANIZATION_NAME: z.string().min(1).max(120).default('Default'),
  APP_API_TOKEN: optionalText,

  AUDIT_SIGNING_KEY: optionalText,
  AUDIT_SIGNING_KEY_FILE: optionalText,
  AUDIT_PUBLIC_KEYS_DIR: optionalText,
  AUDIT_CHECKPOINT_EVERY: int(1000, 1, 10_000_000),
  AUDIT_CHECKPOINT_INTERVAL_SECONDS: int(60, 0, 86_400),
  AUDIT_CHAIN_SWEEP_MS: int(1000, 0, 3_600_000),

  KEYCLOAK_URL: optionalText.pipe(z.url('must be an http(s) URL').optional()),
  KEYCLOAK_REALM: z.string().min(1).default('bud'),
  KEYCLOAK_CLIENT_ID: optionalText,
  KEYCLOAK_CLIENT_SECRET: optionalText,
  KEYCLOAK_AUDIENCE: optionalText,
  KEYCLOAK_ALGORITHMS: z.string().default('RS256,PS256,ES256'),
  KEYCLOAK_ROLE_CLAIMS: z.string().default('realm_access.roles,resource_access.{client_id}.roles'),
  KEYCLOAK_ORGANIZATION_CLAIM: z.string().default('organization'),
  KEYCLOAK_DEFAULT_ROLE: z.enum(['admin', 'devops', 'developer', 'tester']).default('developer'),
  KEYCLOAK_PASSWORD_GRANT: bool(true),
  KEYCLOAK_TIMEOUT_MS: int(5000, 100, 60_000),
  KEYCLOAK_JWKS_COOLDOWN_MS: int(30_000, 0, 3_600_000),
  OIDC_REDIRECT_URI: optionalText.pipe(z.url('must be an http(s) URL').optional()),
  FRONTEND_URL: optionalText.pipe(z.url('must be an http(s) URL').optional()),

  CREDENTIAL_KEYS_DIR: optionalText,
  CREDENTIAL_CURRENT_KEY_ID: optionalText,

  RATE_LIMIT_ENABLED: bool(true),
  LOGIN_RATE_LIMIT_PER_IP: int(20, 1, 100_000),
  LOGIN_RATE_LIMIT_PER_ACCOUNT: int(10, 1, 100_000),
  LOGIN_RATE_LIMIT_WINDOW_SECONDS: int(60, 1, 86_400),
});

export type Env = z.infer<typeof envSchema>;

export interface Config {
  env: Env['NODE_ENV'];
  isProduction: boolean;
  host: string;
  port: number;
  dataDir: string;
  database: { kind: 'pglite'; dataDir: string } | { kind: 'postgres'; url: string; poolSize: number; readPoolSize: number; preparedStatements: boolean };
  logLevel: Env['LOG_LEVEL'];
  bodyLimitBytes: number;
  shutdownTimeoutMs: number;
  trustProxy: boolean;
  auth: {
    issuer: string;
    audience: string;
    privateKeyPem?: string;
    privateKeyFile?: string;
    accessTokenTtlSeconds: number;
    refreshTokenTtlSeconds: number;
    clockSkewSeconds: number;
  };
  bootstrap: { superUserEmail: string; superUserPassword?: string; defaultOrganizationName: string };
  appApiToken?: string;
  audit: {
    signingKeyPem?: string;
    signingKeyFile?: string;
    publicKeysDir: string;
    checkpointEvery: number;
    checkpointIntervalSeconds: number;
    /** How often the chainer looks for pending records no notification covered; 0: never. */
    chainSweepMs: number;
  };
  rateLimit: { enabled: boolean; loginPerIp: number; loginPerAccount: number; windowSeconds: number };
  /** Set when KEYCLOAK_URL is: the identity provider is Keycloak (or any OpenID provider) instead of the local issuer. */
  keycloak?: KeycloakConfig;
  frontendUrl?: string;
  credentials: { keysDir: string; currentKeyId?: string; generateIfMissing: boolean };
}

export interface KeycloakConfig {
  url: string;
  realm: string;
  issuerUrl: string;
  clientId: string;
  clientSecret: string;
  audience: string;
  algorithms: string[];
  roleClaims: string[];
  organizationClaim: string;
  defaultRole: 'admin' | 'devops' | 'developer' | 'tester';
  passwordGrant: boolean;
  timeoutMs: number;
  /** At most one JWKS refetch per this interval, however many unknown kids arrive. */
  jwksCooldownMs: number;
  redirectUri: string;
}

/** Parses the environment once. Throws ConfigError naming every bad variable. */
export function loadConfig(source: Record<string, string | undefined> = process.env): Config {
  const parsed = envSchema.safeParse(source);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  const e = parsed.data;
  const isProduction = e.NODE_ENV === 'production';
  if (e.KEYCLOAK_URL && (!e.KEYCLOAK_CLIENT_ID || !e.KEYCLOAK_CLIENT_SECRET)) {
    throw new ConfigError('KEYCLOAK_URL is set, so KEYCLOAK_CLIENT_ID and KEYCLOAK_CLIENT_SECRET are required');
  }
  if (isProduction) {
    const missing: string[] = [];
    if (!e.KEYCLOAK_URL && !e.JWT_PRIVATE_KEY && !e.JWT_PRIVATE_KEY_FILE) missing.push('JWT_PRIVATE_KEY or JWT_PRIVATE_KEY_FILE (signing key)');
    if (!e.APP_API_TOKEN) missing.push('APP_API_TOKEN (internal service token)');
    if (!e.AUDIT_SIGNING_KEY && !e.AUDIT_SIGNING_KEY_FILE) missing.push('AUDIT_SIGNING_KEY or AUDIT_SIGNING_KEY_FILE (audit checkpoint key)');
    if (!e.CREDENTIAL_KEYS_DIR) missing.push('CREDENTIAL_KEYS_DIR (RSA key-encryption keys of the credentials vault)');
    if (missing.length > 0) {
      throw new ConfigError(
        `NODE_ENV=production refuses to start without these secrets:\n${missing.map((m) => `  ${m}`).join('\n')}`,
      );
    }
    if (e.APP_API_TOKEN && e.APP_API_TOKEN.length < 32) {
      throw new ConfigError('APP_API_TOKEN: must be at least 32 characters in production');
    }
  }
  return {
    env: e.NODE_ENV,
    isProduction,
    host: e.HOST,
    port: e.PORT,
    dataDir: e.DATA_DIR,
    database: e.DATABASE_URL
      ? { kind: 'postgres', url: e.DATABASE_URL, poolSize: e.DATABASE_POOL_SIZE, readPoolSize: e.DATABASE_READ_POOL_SIZE, preparedStatements: e.DATABASE_PREPARED_STATEMENTS }
      : { kind: 'pglite', dataDir: `${e.DATA_DIR}/pglite` },
    logLevel: e.LOG_LEVEL,
    bodyLimitBytes: e.BODY_LIMIT_BYTES,
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    trustProxy: e.TRUST_PROXY,
    auth: {
      issuer: e.JWT_ISSUER,
      audience: e.JWT_AUDIENCE,
      privateKeyPem: e.JWT_PRIVATE_KEY,
      privateKeyFile: e.JWT_PRIVATE_KEY_FILE,
      accessTokenTtlSeconds: e.ACCESS_TOKEN_TTL_SECONDS,
      refreshTokenTtlSeconds: e.REFRESH_TOKEN_TTL_SECONDS,
      clockSkewSeconds: e.TOKEN_CLOCK_SKEW_SECONDS,
    },
    bootstrap: {
      superUserEmail: e.SUPER_USER_EMAIL.toLowerCase(),
      superUserPassword: e.SUPER_USER_PASSWORD,
      defaultOrganizationName: e.DEFAULT_ORGANIZATION_NAME,
    },
    appApiToken: e.APP_API_TOKEN,
    audit: {
      signingKeyPem: e.AUDIT_SIGNING_KEY,
      signingKeyFile: e.AUDIT_SIGNING_KEY_FILE,
      publicKeysDir: e.AUDIT_PUBLIC_KEYS_DIR ?? `${e.DATA_DIR}/keys/audit-public`,
      checkpointEvery: e.AUDIT_CHECKPOINT_EVERY,
      checkpointIntervalSeconds: e.AUDIT_CHECKPOINT_INTERVAL_SECONDS,
      chainSweepMs: e.AUDIT_CHAIN_SWEEP_MS,
    },
    keycloak: e.KEYCLOAK_URL
      ? {
          url: e.KEYCLOAK_URL.replace(/\/+$/, ''),
          realm: e.KEYCLOAK_REALM,
          issuerUrl: `${e.KEYCLOAK_URL.replace(/\/+$/, '')}/realms/${encodeURIComponent(e.KEYCLOAK_REALM)}`,
          clientId: e.KEYCLOAK_CLIENT_ID!,
          clientSecret: e.KEYCLOAK_CLIENT_SECRET!,
          audience: e.KEYCLOAK_AUDIENCE ?? e.KEYCLOAK_CLIENT_ID!,
          algorithms: e.KEYCLOAK_ALGORITHMS.split(',').map((a) => a.trim()).filter(Boolean),
          roleClaims: e.KEYCLOAK_ROLE_CLAIMS.split(',').map((c) => c.trim().replace('{client_id}', e.KEYCLOAK_CLIENT_ID!)).filter(Boolean),
          organizationClaim: e.KEYCLOAK_ORGANIZATION_CLAIM,
          defaultRole: e.KEYCLOAK_DEFAULT_ROLE,
          passwordGrant: e.KEYCLOAK_PASSWORD_GRANT,
          timeoutMs: e.KEYCLOAK_TIMEOUT_MS,
          jwksCooldownMs: e.KEYCLOAK_JWKS_COOLDOWN_MS,
          redirectUri: e.OIDC_REDIRECT_URI ?? `http://localhost:${e.PORT}/auth/oauth/callback`,
        }
      : undefined,
    frontendUrl: e.FRONTEND_URL,
    credentials: {
      keysDir: e.CREDENTIAL_KEYS_DIR ?? `${e.DATA_DIR}/keys/credential-kek`,
      currentKeyId: e.CREDENTIAL_CURRENT_KEY_ID,
      generateIfMissing: !isProduction,
    },
    rateLimit: {
      enabled: e.RATE_LIMIT_ENABLED,
      loginPerIp: e.LOGIN_RATE_LIMIT_PER_IP,
      loginPerAccount: e.LOGIN_RATE_LIMIT_PER_ACCOUNT,
      windowSeconds: e.LOGIN_RATE_LIMIT_WINDOW_SECONDS,
    },
  };
}
