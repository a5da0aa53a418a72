/**
 * Keycloak mode end to end: the real HTTP app (app.request) against a fake Keycloak — a real OpenID provider
 * shaped like a Keycloak realm (test/support/oidc-server.ts). One fake for the whole file; extra app instances
 * (other configuration) share the primary app's database and clock.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { and, asc, eq, sql, type SQL } from 'drizzle-orm';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditRecords } from '../src/db/schema/audit.js';
import { PASSWORD } from './support/app.js';
import { createKeycloakApp, type KeycloakTestApp } from './support/keycloak-app.js';
import { startFakeKeycloak, type FakeKeycloak } from './support/oidc-server.js';
import { chained } from './support/audit.js';

const COOLDOWN_MS = 1000;

let fake: FakeKeycloak;
let t: KeycloakTestApp;

beforeAll(async () => {
  fake = await startFakeKeycloak();
  t = await createKeycloakApp(fake, { KEYCLOAK_JWKS_COOLDOWN_MS: String(COOLDOWN_MS) });
});

afterAll(async () => {
  await t?.close();
  await fake?.stop();
});

// --- helpers ----------------------------------------------------------------------------------------------------

let seq = 0;
const email = (prefix: string) => `${prefix}-${process.pid}-${++seq}@kc.test`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const nowS = () => Math.floor(Date.now() / 1000);

/** A fake user with a password, signed in nowhere yet. */
function kcUser(prefix: string, extra: { realmRoles?: string[]; organization?: string; name?: string } = {}) {
  const u = { email: email(prefix), password: `pw-${randomBytes(6).toString('hex')}-long-enough` };
  const fu = fake.addUser({ ...u, name: extra.name ?? 'Kc Tester', realmRoles: extra.realmRoles ?? [], organization: extra.organization });
  return { ...u, sub: fu.sub, fake: fu };
}

/** Straight to the provider's token endpoint (tokens budapp has never seen). */
async function providerToken(params: Record<string, string>) {
  const res = await fetch(`${fake.issuer}/protocol/openid-connect/token`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${fake.clientId}:${fake.clientSecret}`).toString('base64')}`,
    },
    body: new URLSearchParams(params),
  });
  return { status: res.status, body: (await res.json()) as Record<string, string> };
}
const providerPassword = async (u: { email: string; password: string }, scope = 'openid') => {
  const r = await providerToken({ grant_type: 'password', username: u.email, password: u.password, scope });
  if (r.status !== 200) throw new Error(`provider password grant: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
};

/** Keycloak-shaped access-token claims for fake.signToken. */
const accessClaims = (sub: string, extra: Record<string, unknown> = {}) => ({
  iss: fake.issuer,
  sub,
  aud: [fake.clientId, 'account'],
  azp: fake.clientId,
  typ: 'Bearer',
  iat: nowS(),
  exp: nowS() + 300,
  jti: randomUUID(),
  ...extra,
});

const audit = async (where: SQL | undefined) => {
  await chained(t);
  return t.deps.db.select().from(auditRecords).where(where).orderBy(asc(auditRecords.id));
};
const me = (token: string, app: KeycloakTestApp = t) => app.request('GET', '/auth/me', { token });

function expectProblem(res: { status: number; headers: Headers; body: any }, status: number) {
  expect(res.status).toBe(status);
  expect(res.headers.get('content-type')).toContain('application/problem+json');
  expect(res.body).toMatchObject({ status, type: expect.stringMatching(/^urn:budapp:problem:/) });
}

async function createOrganization(name: string): Promise<string> {
  const res = await t.request('POST', '/organizations', { token: t.superAdmin.token, body: { name } });
  expect(res.status).toBe(201);
  return res.body.id;
}

/** Runs the code flow against an app up to the provider's redirect back to us. */
async function startCodeFlow(app: KeycloakTestApp) {
  const res = await app.raw('/auth/oauth/login');
  expect(res.status).toBe(302);
  return res.headers.get('location')!;
}
const callbackPath = (callbackUrl: string) => {
  const u = new URL(callbackUrl);
  return u.pathname + u.search;
};

// --- 1. password sign-in ------------------------------------------------------------------------------------------

describe('POST /auth/login through the provider (password grant)', () => {
  it('answers a token pair with Keycloak field names; /auth/me works; the user is provisioned just in time and audited', async () => {
    const orgId = await createOrganization(`Acme KC ${process.pid}`);
    const ada = kcUser('ada', { realmRoles: ['devops'], organization: `acme kc ${process.pid}`, name: 'Ada Lovelace' });

    const res = await t.request('POST', '/auth/login', { body: { email: ada.email, password: ada.password } });
    expect(res.status).toBe(200);
    expect(Object.keys(res.body).sort()).toEqual(['access_token', 'expires_in', 'refresh_expires_in', 'refresh_token', 'token_type', 'user']);
    expect(res.body).toMatchObject({ token_type: 'Bearer', expires_in: 300, refresh_expires_in: 1800 });
    // The provider's own tokens, passed through.
    const claims = decodeJwt(res.body.access_token);
    expect(claims).toMatchObject({ iss: fake.issuer, sub: ada.sub, azp: fake.clientId, typ: 'Bearer' });
    expect(res.body.user).toMatchObject({
      email: ada.email,
      name: 'Ada Lovelace',
      keycloak_id: ada.sub,
      role: 'devops',
      organization_id: orgId,
      status: 'active',
      is_active: true,
    });

    const who = await me(res.body.access_token);
    expect(who.status).toBe(200);
    expect(who.body).toMatchObject({ user: { id: res.body.user.id, keycloak_id: ada.sub }, role: 'devops', organization: { id: orgId } });

    const userId = res.body.user.id as string;
    const created = await audit(and(eq(auditRecords.action, 'create'), eq(auditRecords.resourceId, userId)));
    expect(created).toHaveLength(1);
    expect(created[0]).toMatchObject({
      resourceType: 'user',
      actorType: 'service',
      userId: null,
      chainId: `org:${orgId}`,
      details: { after: { email: ada.email, role: 'devops', organization_id: orgId, provisioned_from: 'identity_provider' } },
    });
    const logins = await audit(and(eq(auditRecords.action, 'login'), eq(auditRecords.userId, userId)));
    expect(logins).toHaveLength(1);
    expect(logins[0]).toMatchObject({ resourceType: 'session', resourceId: claims.sid, chainId: `org:${orgId}`, details: { family_id: claims.sid, method: 'password' } });
  });

  it('takes the organisation by id too; an unknown organisation falls back to the default one; roles map to the highest of ours', async () => {
    const orgId = await createOrganization(`By Id KC ${process.pid}`);
    const byId = kcUser('byid', { realmRoles: ['tester', 'admin'], organization: orgId });
    const nowhere = kcUser('nowhere', { realmRoles: ['tester'], organization: 'No Such Organisation' });
    const plain = kcUser('plain', { realmRoles: ['super_admin', 'offline_access'] });

    const a = await t.login(byId.email, byId.password);
    expect(a.user).toMatchObject({ organization_id: orgId, role: 'admin' });
    const b = await t.login(nowhere.email, nowhere.password);
    expect(b.user).toMatchObject({ organization_id: t.superAdmin.organizationId, role: 'tester' });
    // super_admin is never taken from a token; none of our roles → KEYCLOAK_DEFAULT_ROLE (developer).
    const c = await t.login(plain.email, plain.password);
    expect(c.user).toMatchObject({ organization_id: t.superAdmin.organizationId, role: 'developer' });
  });

  it('wrong password or unknown user → the same 401 problem, audited login_failed with reason idp_rejected', async () => {
    const bob = kcUser('bob', { realmRoles: ['developer'] });
    const wrong = await t.request('POST', '/auth/login', { body: { email: bob.email, password: 'not-the-password-1' } });
    expectProblem(wrong, 401);
    expect(wrong.body.detail).toBe('Invalid email or password');
    const ghostEmail = email('ghost');
    const ghost = await t.request('POST', '/auth/login', { body: { email: ghostEmail, password: 'whatever-password-1' } });
    expectProblem(ghost, 401);
    expect({ ...ghost.body, request_id: undefined }).toEqual({ ...wrong.body, request_id: undefined });

    for (const e of [bob.email, ghostEmail]) {
      const failed = await audit(and(eq(auditRecords.action, 'login_failed'), sql`${auditRecords.details}->>'email' = ${e}`));
      expect(failed).toHaveLength(1);
      expect(failed[0]).toMatchObject({ resourceType: 'user', chainId: 'platform', userId: null, details: { reason: 'idp_rejected', email: e } });
    }
  });

  it('a bearer token for a subject never signed in here provisions the user on first use (no role sync, no login record)', async () => {
    const cy = kcUser('cy', { realmRoles: ['tester'] });
    const tokens = await providerPassword(cy);
    const who = await me(tokens.access_token!);
    expect(who.status).toBe(200);
    expect(who.body).toMatchObject({ user: { keycloak_id: cy.sub, email: cy.email }, role: 'tester' });
    const id = who.body.user.id as string;
    expect(await audit(and(eq(auditRecords.action, 'create'), eq(auditRecords.resourceId, id)))).toEqual([expect.objectContaining({ actorType: 'service' })]);
    expect(await audit(and(eq(auditRecords.action, 'login'), eq(auditRecords.userId, id)))).toEqual([]);
  });

  it('KEYCLOAK_PASSWORD_GRANT=false: POST /auth/login answers 403, the code flow stays available', async () => {
    const app = await createKeycloakApp(fake, { KEYCLOAK_PASSWORD_GRANT: 'false' }, { shareWith: t });
    try {
      const u = kcUser('nopw');
      expectProblem(await app.request('POST', '/auth/login', { body: { email: u.email, password: u.password } }), 403);
      expect((await app.raw('/auth/oauth/login')).status).toBe(302);
    } finally {
      await app.close();
    }
  });

  it('a wrong KEYCLOAK_CLIENT_SECRET is our misconfiguration: sign-in answers 503, not the user’s 401', async () => {
    const app = await createKeycloakApp(fake, { KEYCLOAK_CLIENT_SECRET: 'not-the-client-secret' }, { shareWith: t });
    try {
      const u = kcUser('badsecret');
      const res = await app.request('POST', '/auth/login', { body: { email: u.email, password: u.password } });
      expectProblem(res, 503);
      expect((await app.request('GET', '/ready')).status).toBe(200); // discovery needs no client authentication
    } finally {
      await app.close();
    }
  });
});

// --- 2. role sync -------------------------------------------------------------------------------------------------

describe('role sync on sign-in', () => {
  it('a realm role changed at the provider is applied at the next sign-in, audited as a service update, and seen at once', async () => {
    const dee = kcUser('dee', { realmRoles: ['devops'] });
    const first = await t.login(dee.email, dee.password);
    expect(first.user.role).toBe('devops');
    expect((await me(first.access_token)).body.role).toBe('devops'); // caches the user's state

    dee.fake.realmRoles = ['tester'];
    // An existing token does not re-sync: only a sign-in does.
    expect((await me((await providerPassword(dee)).access_token!)).body.role).toBe('devops');
    const second = await t.login(dee.email, dee.password);
    expect(second.user.role).toBe('tester');
    expect((await me(first.access_token)).body.role).toBe('tester'); // the cached state was dropped

    const updates = await audit(and(eq(auditRecords.action, 'update'), eq(auditRecords.resourceId, first.user.id)));
    expect(updates).toHaveLength(1);
    expect(updates[0]).toMatchObject({ actorType: 'service', userId: null, details: { changes: { role: { old: 'devops', new: 'tester' } } } });

    // All our roles removed at the provider → KEYCLOAK_DEFAULT_ROLE (the claim is readable, it names none of ours).
    dee.fake.realmRoles = [];
    expect((await t.login(dee.email, dee.password)).user.role).toBe('developer');
  });

  it('no readable role claim (KEYCLOAK_ROLE_CLAIMS names a missing claim): the stored role is kept, nothing audited', async () => {
    const app = await createKeycloakApp(fake, { KEYCLOAK_ROLE_CLAIMS: 'missing.roles,also_missing' }, { shareWith: t });
    try {
      const eve = kcUser('eve', { realmRoles: ['devops'] });
      const first = await t.login(eve.email, eve.password);
      expect(first.user.role).toBe('devops');

      eve.fake.realmRoles = ['admin'];
      const second = await app.login(eve.email, eve.password);
      expect(second.user.role).toBe('devops');
      eve.fake.realmRoles = [];
      expect((await app.login(eve.email, eve.password)).user.role).toBe('devops');
      expect(await audit(and(eq(auditRecords.action, 'update'), eq(auditRecords.resourceId, first.user.id)))).toEqual([]);

      // A user first seen without a readable claim gets KEYCLOAK_DEFAULT_ROLE.
      const fay = kcUser('fay', { realmRoles: ['admin'] });
      expect((await app.login(fay.email, fay.password)).user.role).toBe('developer');
    } finally {
      await app.close();
    }
  });
});

// --- 3. refresh and logout ----------------------------------------------------------------------------------------

describe('refresh and logout', () => {
  it('POST /auth/refresh trades the refresh token at the provider for a new pair (rotated; the old one then fails)', async () => {
    const gus = kcUser('gus', { realmRoles: ['developer'] });
    const s = await t.login(gus.email, gus.password);
    const r = await t.request('POST', '/auth/refresh', { body: { refresh_token: s.refresh_token } });
    expect(r.status).toBe(200);
    expect(Object.keys(r.body).sort()).toEqual(['access_token', 'expires_in', 'refresh_expires_in', 'refresh_token', 'token_type', 'user']);
    expect(r.body.refresh_token).not.toBe(s.refresh_token);
    expect(r.body.access_token).not.toBe(s.access_token);
    expect(r.body.user.id).toBe(s.user.id);
    expect((await me(r.body.access_token)).status).toBe(200);
    const refreshes = await audit(and(eq(auditRecords.action, 'token_refresh'), eq(auditRecords.userId, s.user.id)));
    expect(refreshes).toEqual([expect.objectContaining({ resourceId: decodeJwt(s.access_token).sid })]);

    expectProblem(await t.request('POST', '/auth/refresh', { body: { refresh_token: s.refresh_token } }), 401);
    expectProblem(await t.request('POST', '/auth/refresh', { body: { refresh_token: 'not-a-refresh-token' } }), 401);
  });

  it('POST /auth/logout revokes at the provider and denies the presented access token at once', async () => {
    const hal = kcUser('hal', { realmRoles: ['developer'] });
    const s = await t.login(hal.email, hal.password);
    const r = (await t.request('POST', '/auth/refresh', { body: { refresh_token: s.refresh_token } })).body;
    expect((await me(r.access_token)).status).toBe(200);

    const out = await t.request('POST', '/auth/logout', { token: r.access_token, body: { refresh_token: r.refresh_token } });
    expect(out.status).toBe(200);
    expect(out.body).toEqual({ logged_out: true });

    expectProblem(await me(r.access_token), 401);
    expectProblem(await t.request('POST', '/auth/refresh', { body: { refresh_token: r.refresh_token } }), 401);
    const atProvider = await providerToken({ grant_type: 'refresh_token', refresh_token: r.refresh_token });
    expect(atProvider).toMatchObject({ status: 400, body: { error: 'invalid_grant' } });
    expect(await audit(and(eq(auditRecords.action, 'logout'), eq(auditRecords.userId, s.user.id)))).toHaveLength(1);

    // Observed: another access token of the same (now ended) provider session is still accepted until it
    // expires — tokens are verified locally and only the presented jti is denylisted.
    expect((await me(s.access_token)).status).toBe(200);
  });
});

// --- 4. authorization code + PKCE ---------------------------------------------------------------------------------

describe('authorization code + PKCE', () => {
  it('login → provider → callback answers the token pair; the state is single use', async () => {
    const ivy = kcUser('ivy', { realmRoles: ['admin'] });
    const location = await startCodeFlow(t);
    const auth = new URL(location);
    expect(auth.origin + auth.pathname).toBe(`${fake.issuer}/protocol/openid-connect/auth`);
    const p = auth.searchParams;
    expect(p.get('response_type')).toBe('code');
    expect(p.get('client_id')).toBe(fake.clientId);
    expect(p.get('redirect_uri')).toBe(fake.redirectUri);
    expect(p.get('scope')!.split(' ')).toContain('openid');
    expect(p.get('code_challenge_method')).toBe('S256');
    expect(p.get('code_challenge')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(p.get('state')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(p.get('nonce')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(p.get('nonce')).not.toBe(p.get('state'));

    const callback = await fake.authorize(location, ivy);
    expect(new URL(callback).searchParams.get('state')).toBe(p.get('state'));
    const res = await t.request('GET', callbackPath(callback));
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(Object.keys(res.body).sort()).toEqual(['access_token', 'expires_in', 'refresh_expires_in', 'refresh_token', 'token_type', 'user']);
    expect(res.body.user).toMatchObject({ email: ivy.email, keycloak_id: ivy.sub, role: 'admin' });
    expect((await me(res.body.access_token)).status).toBe(200);
    const logins = await audit(and(eq(auditRecords.action, 'login'), eq(auditRecords.userId, res.body.user.id)));
    expect(logins).toEqual([expect.objectContaining({ details: expect.objectContaining({ method: 'oauth' }) })]);

    // The same callback again: the state was used.
    const replay = await t.request('GET', callbackPath(callback));
    expectProblem(replay, 401);
  });

  it('a tampered state is refused (and does not spend the real one); missing parameters are 400; a provider error is 401', async () => {
    const jo = kcUser('jo');
    const callback = new URL(await fake.authorize(await startCodeFlow(t), jo));
    const tampered = new URL(callback);
    const state = callback.searchParams.get('state')!;
    tampered.searchParams.set('state', `${state.slice(0, -1)}${state.endsWith('A') ? 'B' : 'A'}`);
    expectProblem(await t.request('GET', callbackPath(tampered.href)), 401);
    const noState = new URL(callback);
    noState.searchParams.delete('state');
    expectProblem(await t.request('GET', callbackPath(noState.href)), 400);
    expectProblem(await t.request('GET', '/auth/oauth/callback?error=access_denied&state=whatever'), 401);
    expect((await t.request('GET', callbackPath(callback.href))).status).toBe(200);
  });

  it('PKCE is enforced end to end: a code issued for another challenge does not trade', async () => {
    const kim = kcUser('kim');
    const auth = new URL(await startCodeFlow(t));
    auth.searchParams.set('code_challenge', randomBytes(32).toString('base64url'));
    const res = await t.request('GET', callbackPath(await fake.authorize(auth.href, kim)));
    expectProblem(res, 401);
  });

  it('an ID token with another nonce than the one sent is refused', async () => {
    const lee = kcUser('lee');
    const auth = new URL(await startCodeFlow(t));
    auth.searchParams.set('nonce', randomBytes(32).toString('base64url')); // the provider now signs this nonce
    const callback = await fake.authorize(auth.href, lee);
    const res = await t.request('GET', callbackPath(callback));
    expectProblem(res, 401);
    expect(await audit(and(eq(auditRecords.action, 'login'), sql`${auditRecords.details}->>'method' = 'oauth'`, sql`${auditRecords.userId} in (select id from users where email = ${lee.email})`))).toEqual([]);
  });

  it('with FRONTEND_URL the callback redirects with a one-time code; POST /auth/oauth/exchange answers the tokens once', async () => {
    const frontend = 'http://127.0.0.1:5173/signed-in?from=kc';
    const app = await createKeycloakApp(fake, { FRONTEND_URL: frontend }, { shareWith: t });
    try {
      const mo = kcUser('mo', { realmRoles: ['tester'] });
      const callback = await fake.authorize(await startCodeFlow(app), mo);
      const res = await app.raw(callbackPath(callback));
      expect(res.status).toBe(302);
      expect(res.headers.get('cache-control')).toBe('no-store');
      const to = new URL(res.headers.get('location')!);
      expect(to.origin + to.pathname).toBe('http://127.0.0.1:5173/signed-in');
      expect([...to.searchParams.keys()].sort()).toEqual(['code', 'from']);
      expect(res.headers.get('location')).not.toMatch(/access_token|refresh_token|eyJ/);
      const code = to.searchParams.get('code')!;

      const first = await app.request('POST', '/auth/oauth/exchange', { body: { code } });
      expect(first.status).toBe(200);
      expect(first.body.user).toMatchObject({ email: mo.email, role: 'tester' });
      expect((await me(first.body.access_token)).status).toBe(200);
      expectProblem(await app.request('POST', '/auth/oauth/exchange', { body: { code } }), 401);
      expectProblem(await t.request('POST', '/auth/oauth/exchange', { body: { code: 'never-issued' } }), 401);
    } finally {
      await app.close();
    }
  });

  it('of two concurrent POST /auth/oauth/exchange with the same one-time code, only one gets the tokens', async () => {
    const app = await createKeycloakApp(fake, { FRONTEND_URL: 'http://127.0.0.1:5173/signed-in' }, { shareWith: t });
    try {
      const ned = kcUser('ned');
      const res = await app.raw(callbackPath(await fake.authorize(await startCodeFlow(app), ned)));
      const code = new URL(res.headers.get('location')!).searchParams.get('code')!;
      const both = await Promise.all([1, 2].map(() => app.request('POST', '/auth/oauth/exchange', { body: { code } })));
      expect(both.map((r) => r.status).sort()).toEqual([200, 401]);
    } finally {
      await app.close();
    }
  });
});

// --- 9. user management through the Keycloak admin API ------------------------------------------------------------

describe('users created and deactivated in budapp', () => {
  it('POST /users creates the user at the provider with the service account; DELETE disables it there', async () => {
    const newEmail = email('grace');
    const before = fake.adminRequests.length;
    const res = await t.request('POST', '/users', {
      token: t.superAdmin.token,
      body: { email: newEmail, name: 'Grace Brewster Hopper', role: 'devops', password: PASSWORD },
    });
    expect(res.status).toBe(201);
    const kcUserRow = fake.users.get(newEmail)!;
    expect(kcUserRow).toBeDefined();
    expect(res.body).toMatchObject({ email: newEmail, keycloak_id: kcUserRow.id, status: 'active', role: 'devops' });

    const created = fake.adminRequests.slice(before).find((r) => r.method === 'POST' && r.path === '/admin/realms/bud/users')!;
    expect(created).toBeDefined();
    expect(created.body).toEqual({
      username: newEmail,
      email: newEmail,
      firstName: 'Grace',
      lastName: 'Brewster Hopper',
      enabled: true,
      emailVerified: false,
      credentials: [{ type: 'password', value: PASSWORD, temporary: false }],
    });
    expect(created.authorization).toMatch(/^Bearer /);
    expect(decodeJwt(created.authorization!.slice(7))).toMatchObject({ sub: fake.serviceAccountId, preferred_username: `service-account-${fake.clientId}` });
    expect(kcUserRow).toMatchObject({ enabled: true, firstName: 'Grace', lastName: 'Brewster Hopper' });

    // The created user signs in with the password given to budapp (it lives at the provider only).
    const session = await t.login(newEmail, PASSWORD);
    expect(session.user.id).toBe(res.body.id);

    const del = await t.request('DELETE', `/users/${res.body.id}`, { token: t.superAdmin.token });
    expect(del.status).toBe(200);
    expect(del.body).toMatchObject({ status: 'deactivated', is_active: false });
    const disabled = fake.adminRequests.slice(before).filter((r) => r.method === 'PUT');
    expect(disabled).toEqual([expect.objectContaining({ path: `/admin/realms/bud/users/${kcUserRow.id}`, body: { enabled: false }, authorization: created.authorization })]);
    expect(kcUserRow.enabled).toBe(false);
    expectProblem(await me(session.access_token), 401); // refused here at once
    expectProblem(await t.request('POST', '/auth/login', { body: { email: newEmail, password: PASSWORD } }), 401);

    // An e-mail the provider already has → 409.
    const clash = kcUser('clash');
    const dup = await t.request('POST', '/users', { token: t.superAdmin.token, body: { email: clash.email, name: 'Clash', role: 'tester', password: PASSWORD } });
    expectProblem(dup, 409);
  });

  it('the role given at POST /users is granted at the provider, so the first sign-in keeps it', async () => {
    const newEmail = email('roled');
    const res = await t.request('POST', '/users', { token: t.superAdmin.token, body: { email: newEmail, name: 'Role Kept', role: 'devops', password: PASSWORD } });
    expect(res.status).toBe(201);
    expect(res.body.role).toBe('devops');
    const session = await t.login(newEmail, PASSWORD);
    expect(session.user.role).toBe('devops');
  });
});

// --- 10. embedded endpoints ---------------------------------------------------------------------------------------

describe('embedded-issuer endpoints', () => {
  it('/.well-known/jwks.json answers 404 in Keycloak mode', async () => {
    const res = await t.request('GET', '/.well-known/jwks.json');
    expectProblem(res, 404);
  });
});

// --- 8. foreign tokens --------------------------------------------------------------------------------------------

describe('tokens that are not access tokens for this API', () => {
  it('another audience, another issuer, another algorithm, expired, ID and refresh typ → 401', async () => {
    const pat = kcUser('pat', { realmRoles: ['developer'] });
    const ok = await fake.signToken(accessClaims(pat.sub));
    expect((await me(ok)).status).toBe(200); // the baseline is accepted
    // Keycloak's default access tokens carry aud "account" only: azp = our client makes them acceptable.
    expect((await me(await fake.signToken(accessClaims(pat.sub, { aud: 'account' })))).status).toBe(200);

    const refused = {
      'other audience and azp': await fake.signToken(accessClaims(pat.sub, { aud: ['other-api', 'account'], azp: 'other-client' })),
      'other issuer': await fake.signToken(accessClaims(pat.sub, { iss: `${fake.url}/realms/other` })),
      'issuer with trailing slash': await fake.signToken(accessClaims(pat.sub, { iss: `${fake.issuer}/` })),
      'ID typ': await fake.signToken(accessClaims(pat.sub, { typ: 'ID', aud: fake.clientId })),
      'Refresh typ': await fake.signToken(accessClaims(pat.sub, { typ: 'Refresh', aud: fake.issuer })),
      expired: await fake.signToken(accessClaims(pat.sub, { iat: nowS() - 900, exp: nowS() - 600 })),
      'HS256 with the client secret': await fake.signToken(accessClaims(pat.sub), { alg: 'HS256' }),
      'alg none': await fake.signToken(accessClaims(pat.sub), { alg: 'none' }),
      'no sub': await fake.signToken(accessClaims('', { sub: undefined })),
    };
    for (const [why, token] of Object.entries(refused)) {
      const res = await me(token);
      expect({ why, status: res.status }).toEqual({ why, status: 401 });
    }
  });

  it('a real ID token from the provider used as a bearer → 401', async () => {
    const quin = kcUser('quin');
    const set = await providerPassword(quin, 'openid profile email');
    expect(decodeJwt(set.id_token!)).toMatchObject({ typ: 'ID', aud: fake.clientId });
    expectProblem(await me(set.id_token!), 401);
    expect((await me(set.access_token!)).status).toBe(200);
  });
});

// --- 5. signing-key rotation --------------------------------------------------------------------------------------

describe('signing-key rotation at the provider', () => {
  it('new-kid tokens are accepted after one JWKS refetch (cooldown respected); old-kid tokens still verify while published', async () => {
    const rae = kcUser('rae', { realmRoles: ['developer'] });
    const oldUnseen = (await providerPassword(rae)).access_token!; // signed with the current key, never shown to budapp
    const oldKid = decodeProtectedHeader(oldUnseen).kid;
    expect(oldKid).toBe(fake.kids[0]);

    await fake.rotateSigningKey();
    await sleep(COOLDOWN_MS + 150);
    const before = fake.jwksFetches;
    const s = await t.login(rae.email, rae.password); // verifies a new-kid token
    expect(decodeProtectedHeader(s.access_token).kid).toBe(fake.kids[0]);
    expect(decodeProtectedHeader(s.access_token).kid).not.toBe(oldKid);
    expect(fake.jwksFetches - before).toBe(1);
    expect((await me(s.access_token)).status).toBe(200);
    expect((await me(oldUnseen)).status).toBe(200);
    expect(fake.jwksFetches - before).toBe(1);
  });

  it('observed: within the cooldown after a JWKS fetch, a token signed with a just-rotated key is refused (401) — no refetch', async () => {
    const app = await createKeycloakApp(fake, { KEYCLOAK_JWKS_COOLDOWN_MS: '60000' }, { shareWith: t });
    try {
      const sam = kcUser('sam');
      expect((await me((await providerPassword(sam)).access_token!, app)).status).toBe(200); // first JWKS fetch of this app
      await fake.rotateSigningKey();
      const fresh = (await providerPassword(sam)).access_token!;
      const before = fake.jwksFetches;
      expectProblem(await me(fresh, app), 401);
      expect(fake.jwksFetches).toBe(before);
      // The app with the 1 s cooldown takes it after waiting the cooldown out.
      await sleep(COOLDOWN_MS + 150);
      expect((await me(fresh)).status).toBe(200);
    } finally {
      await app.close();
    }
  });

  it('observed: once the old key is withdrawn, an old-kid token never verified before is refused; one verified before stays accepted (cache)', async () => {
    const tia = kcUser('tia');
    const seen = (await providerPassword(tia)).access_token!;
    const unseen = (await providerPassword(tia)).access_token!;
    expect((await me(seen)).status).toBe(200);
    await fake.rotateSigningKey({ dropOld: true });
    await sleep(COOLDOWN_MS + 150);
    const fresh = (await providerPassword(tia)).access_token!;
    expect((await me(fresh)).status).toBe(200); // refetch: only the new key is published now
    expectProblem(await me(unseen), 401);
    expect((await me(seen)).status).toBe(200);
  });
});

// --- 6. random-kid flood ------------------------------------------------------------------------------------------

describe('random-kid flood', () => {
  it('50 tokens with random kids → all 401, and at most one JWKS fetch per cooldown', async () => {
    const uma = kcUser('uma');
    const good = (await providerPassword(uma)).access_token!;
    expect((await me(good)).status).toBe(200);
    const tokens = await Promise.all(
      Array.from({ length: 50 }, () => fake.signToken(accessClaims(uma.sub), { kid: randomBytes(16).toString('base64url') })),
    );
    await sleep(COOLDOWN_MS + 150); // the next unknown kid may refetch once

    const before = fake.jwksFetches;
    const started = Date.now();
    const parallel = await Promise.all(tokens.slice(0, 25).map((tok) => me(tok)));
    const sequential = [];
    for (const tok of tokens.slice(25)) sequential.push(await me(tok));
    const elapsed = Date.now() - started;
    const fetched = fake.jwksFetches - before;

    for (const res of [...parallel, ...sequential]) expectProblem(res, 401);
    expect(fetched).toBeGreaterThanOrEqual(1);
    expect(fetched).toBeLessThanOrEqual(Math.max(1, Math.ceil(elapsed / COOLDOWN_MS)));
    expect((await me(good)).status).toBe(200);
  });
});

// --- 7. provider down ---------------------------------------------------------------------------------------------

describe('identity provider down', () => {
  it('sign-in, refresh and logout answer 503 problem+json; verified and known-key tokens keep working; recovers after start()', async () => {
    const vic = kcUser('vic', { realmRoles: ['developer'] });
    const s = await t.login(vic.email, vic.password);
    expect((await me(s.access_token)).status).toBe(200); // verified once: cached
    const unseen = (await providerPassword(vic)).access_token!; // same key, never verified here
    const randomKid = await fake.signToken(accessClaims(vic.sub), { kid: randomBytes(16).toString('base64url') });
    await sleep(COOLDOWN_MS + 150);

    await fake.stop();
    try {
      const login = await t.request('POST', '/auth/login', { body: { email: vic.email, password: vic.password } });
      expectProblem(login, 503);
      expect(login.body.detail).toMatch(/identity provider is unavailable/);
      expectProblem(await t.request('POST', '/auth/refresh', { body: { refresh_token: s.refresh_token } }), 503);
      expect((await t.raw('/auth/oauth/login')).status).toBe(302); // discovery is cached; the redirect needs no call

      expect((await me(s.access_token)).status).toBe(200); // verified before
      expect((await me(unseen)).status).toBe(200); // key cached by jose, discovery cached: verified locally
      expectProblem(await me(randomKid), 503); // an unknown kid needs the JWKS: unavailable, not 401

      // Logout: denied here at once, but the provider could not be told.
      const out = await t.request('POST', '/auth/logout', { token: s.access_token, body: { refresh_token: s.refresh_token } });
      expectProblem(out, 503);
      expect(out.body.detail).toMatch(/Signed out here/);
      expectProblem(await me(s.access_token), 401);

      // Once the 10-minute discovery cache has expired, /ready notices.
      t.clock.advance(601);
      try {
        expectProblem(await t.request('GET', '/ready'), 503);
      } finally {
        t.clock.advance(-601);
      }
    } finally {
      await fake.start();
    }
    const again = await t.login(vic.email, vic.password);
    expect((await me(again.access_token)).status).toBe(200);
    expect((await t.request('GET', '/ready')).body).toMatchObject({ status: 'ready', checks: { identity_provider: 'ok' } });
    // The session whose revocation failed is still alive at the provider.
    expect((await t.request('POST', '/auth/refresh', { body: { refresh_token: s.refresh_token } })).status).toBe(200);
  });

  it('GET /ready answers 503 while the provider is down, even with discovery cached', async () => {
    expect((await t.request('GET', '/ready')).status).toBe(200);
    await fake.stop();
    try {
      const res = await t.request('GET', '/ready');
      expectProblem(res, 503);
    } finally {
      await fake.start();
    }
  });
});

// --- token lifetime vs. the verified-token cache --------------------------------------------------------------------

describe('provider token lifetimes', () => {
  it('a valid provider token older than ACCESS_TOKEN_TTL_SECONDS is accepted steadily (the embedded TTL does not apply)', async () => {
    const wes = kcUser('wes');
    const iat = nowS();
    // A realm with a 1-hour access token lifespan.
    const token = await fake.signToken(accessClaims(wes.sub, { iat, exp: iat + 3600 }));
    expect((await me(token)).status).toBe(200);
    t.clock.advance(1000); // > ACCESS_TOKEN_TTL_SECONDS (900) + skew, < exp
    try {
      const a = await me(token);
      const b = await me(token);
      expect([a.status, b.status]).toEqual([200, 200]);
    } finally {
      t.clock.advance(-1000);
    }
  });

  it('raised no errors inside the fake provider', () => {
    expect(fake.serverErrors).toEqual([]);
  });
});
