import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { inject } from 'vitest';
import { createApp, type App } from '../../src/app.js';
import { bootstrap } from '../../src/bootstrap.js';
import { loadConfig, type Config } from '../../src/config.js';
import { closeDeps, createDeps, type Deps } from '../../src/deps.js';
import { createLogger } from '../../src/lib/logger.js';
import { openTestDatabase } from './db.js';
import { TestClock } from './clock.js';

export const SUPER_EMAIL = 'root@bud.test';
export const SUPER_PASSWORD = 'correct-horse-battery-staple';
export const PASSWORD = 'a-long-enough-passw0rd';
export const INTERNAL_TOKEN = 'internal-service-token-for-tests-0123456789';

export interface RequestOptions {
  token?: string;
  body?: unknown;
  rawBody?: string;
  headers?: Record<string, string>;
}

export interface JsonResponse<T = any> {
  status: number;
  headers: Headers;
  body: T;
  text: string;
}

export interface TestApp {
  app: App;
  deps: Deps;
  config: Config;
  clock: TestClock;
  /** Every log line written so far, raw JSON text (for secret-leak assertions). */
  logs: string[];
  superAdmin: { id: string; organizationId: string; token: string };
  request<T = any>(method: string, path: string, options?: RequestOptions): Promise<JsonResponse<T>>;
  login(email: string, password: string): Promise<{ access_token: string; refresh_token: string; user: any }>;
  /** Creates an organisation with an admin, returning the admin's token. */
  createOrganization(name?: string): Promise<{ id: string; admin: { id: string; email: string; token: string } }>;
  /** Creates a user (with PASSWORD) in the caller's organisation and signs them in. */
  createUser(token: string, fields: { role: string; email?: string; name?: string; organization_id?: string }): Promise<{ id: string; email: string; token: string; refresh_token: string }>;
  close(): Promise<void>;
}

/** JSON requests against the in-process app (app.request: the real Hono stack without a socket). */
export function jsonRequester(app: App) {
  return async function request<T = any>(method: string, path: string, options: RequestOptions = {}): Promise<JsonResponse<T>> {
    const headers: Record<string, string> = { ...options.headers };
    if (options.token) headers.authorization = `Bearer ${options.token}`;
    let body: string | undefined = options.rawBody;
    if (options.body !== undefined) {
      body = JSON.stringify(options.body);
      headers['content-type'] ??= 'application/json';
    }
    const res = await app.request(path, { method, headers, body });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      /* not JSON */
    }
    return { status: res.status, headers: res.headers, body: parsed as T, text };
  };
}

let counter = 0;
export const uniqueEmail = (prefix = 'user') => `${prefix}-${process.pid}-${Date.now().toString(36)}-${++counter}@example.test`;

/** The environment every test app starts from; each harness adds its own variables on top. */
export const baseTestEnv = (dataDir: string): Record<string, string> => ({
  NODE_ENV: 'test',
  DATA_DIR: dataDir,
  LOG_LEVEL: 'info',
  SUPER_USER_EMAIL: SUPER_EMAIL,
  SUPER_USER_PASSWORD: SUPER_PASSWORD,
  RATE_LIMIT_ENABLED: 'false',
  CREDENTIAL_KEYS_DIR: inject('credentialKeysDir'),
  APP_API_TOKEN: INTERNAL_TOKEN,
});

export async function createTestApp(env: Record<string, string> = {}): Promise<TestApp> {
  const dataDir = mkdtempSync(join(tmpdir(), 'budapp-data-'));
  const config = loadConfig({ ...baseTestEnv(dataDir), ...env });
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logs.push(String(chunk));
      cb();
    },
  });
  const clock = new TestClock();
  const database = await openTestDatabase();
  const deps = await createDeps(config, { database, clock, log: createLogger(config.logLevel, sink) });
  const boot = await bootstrap(deps);
  const app = createApp(deps);

  const request = jsonRequester(app);

  async function login(email: string, password: string) {
    const res = await request('POST', '/auth/login', { body: { email, password } });
    if (res.status !== 200) throw new Error(`login ${email} failed: ${res.status} ${res.text}`);
    return res.body;
  }

  const superLogin = await login(SUPER_EMAIL, SUPER_PASSWORD);
  const superAdmin = { id: boot.superUserId, organizationId: boot.organizationId, token: superLogin.access_token };

  async function createUser(token: string, fields: { role: string; email?: string; name?: string; organization_id?: string }) {
    const email = fields.email ?? uniqueEmail(fields.role);
    const res = await request('POST', '/users', {
      token,
      body: { email, name: fields.name ?? `Test ${fields.role}`, role: fields.role, password: PASSWORD, ...(fields.organization_id ? { organization_id: fields.organization_id } : {}) },
    });
    if (res.status !== 201) throw new Error(`create user failed: ${res.status} ${res.text}`);
    const session = await login(email, PASSWORD);
    return { id: res.body.id as string, email, token: session.access_token, refresh_token: session.refresh_token };
  }

  async function createOrganization(name = `Org ${++counter} ${Date.now()}`) {
    const org = await request('POST', '/organizations', { token: superAdmin.token, body: { name } });
    if (org.status !== 201) throw new Error(`create organisation failed: ${org.status} ${org.text}`);
    const admin = await createUser(superAdmin.token, { role: 'admin', organization_id: org.body.id });
    return { id: org.body.id as string, admin: { id: admin.id, email: admin.email, token: admin.token } };
  }

  return {
    app,
    deps,
    config,
    clock,
    logs,
    superAdmin,
    request,
    login,
    createUser,
    createOrganization,
    async close() {
      await closeDeps(deps);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
