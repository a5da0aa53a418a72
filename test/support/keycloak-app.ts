/**
 * The budapp app in Keycloak mode against a fake Keycloak (test/support/oidc-server.ts).
 *
 *   const kc = await startFakeKeycloak();
 *   const t = await createKeycloakApp(kc, { KEYCLOAK_JWKS_COOLDOWN_MS: '1000' });
 *   const other = await createKeycloakApp(kc, { FRONTEND_URL: '…' }, { shareWith: t }); // same database, own deps
 *
 * Like createTestApp, the super admin signs in right after start — here through the provider, so the fake gets
 * the super admin as a user first (linked to the bootstrapped row by e-mail on that first sign-in).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createApp, type App } from '../../src/app.js';
import { bootstrap } from '../../src/bootstrap.js';
import { loadConfig, type Config } from '../../src/config.js';
import type { Database } from '../../src/db/client.js';
import { closeDeps, createDeps, type Deps } from '../../src/deps.js';
import { createLogger } from '../../src/lib/logger.js';
import type { JsonResponse, RequestOptions } from './app.js';
import { SUPER_EMAIL, SUPER_PASSWORD, baseTestEnv, jsonRequester } from './app.js';
import { TestClock } from './clock.js';
import { openTestDatabase } from './db.js';
import type { FakeKeycloak } from './oidc-server.js';

export interface KeycloakTestApp {
  app: App;
  deps: Deps;
  config: Config;
  clock: TestClock;
  database: Database;
  dataDir: string;
  logs: string[];
  /** Set on the primary app (the one that owns the database). */
  superAdmin: { id: string; organizationId: string; token: string; refreshToken: string };
  request<T = any>(method: string, path: string, options?: RequestOptions): Promise<JsonResponse<T>>;
  /** A raw app.request (no redirect following), for the OAuth routes. */
  raw(path: string, init?: RequestInit): Promise<Response>;
  login(email: string, password: string): Promise<{ access_token: string; refresh_token: string; expires_in: number; refresh_expires_in: number; user: any }>;
  close(): Promise<void>;
}

export const keycloakEnv = (kc: FakeKeycloak): Record<string, string> => ({
  KEYCLOAK_URL: kc.url,
  KEYCLOAK_REALM: kc.realm,
  KEYCLOAK_CLIENT_ID: kc.clientId,
  KEYCLOAK_CLIENT_SECRET: kc.clientSecret,
  OIDC_REDIRECT_URI: kc.redirectUri,
});

export async function createKeycloakApp(
  kc: FakeKeycloak,
  env: Record<string, string> = {},
  opts: { shareWith?: KeycloakTestApp } = {},
): Promise<KeycloakTestApp> {
  const shared = opts.shareWith;
  const dataDir = shared?.dataDir ?? mkdtempSync(join(tmpdir(), 'budapp-kc-data-'));
  const config = loadConfig({ ...baseTestEnv(dataDir), ...keycloakEnv(kc), ...env });
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logs.push(String(chunk));
      cb();
    },
  });
  const clock = shared?.clock ?? new TestClock();
  const database = shared?.database ?? (await openTestDatabase());
  const deps = await createDeps(config, { database, clock, log: createLogger(config.logLevel, sink) });
  const boot = await bootstrap(deps);
  const app = createApp(deps);

  const raw = (path: string, init?: RequestInit) => Promise.resolve(app.request(path, init));

  const request = jsonRequester(app);

  async function login(email: string, password: string) {
    const res = await request('POST', '/auth/login', { body: { email, password } });
    if (res.status !== 200) throw new Error(`login ${email} failed: ${res.status} ${res.text}`);
    return res.body;
  }

  let superAdmin = shared?.superAdmin;
  if (!superAdmin) {
    if (!kc.users.has(SUPER_EMAIL)) kc.addUser({ email: SUPER_EMAIL, password: SUPER_PASSWORD, name: 'Super Admin' });
    const session = await login(SUPER_EMAIL, SUPER_PASSWORD);
    superAdmin = { id: boot.superUserId, organizationId: boot.organizationId, token: session.access_token, refreshToken: session.refresh_token };
  }

  return {
    app,
    deps,
    config,
    clock,
    database,
    dataDir,
    logs,
    superAdmin,
    request,
    raw,
    login,
    async close() {
      if (shared) {
        await deps.cache.close(); // the database belongs to the primary app
        return;
      }
      await closeDeps(deps);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
