import { createHash, randomBytes } from 'node:crypto';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify, type JWTPayload } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OidcTokenSet } from '../src/platform/identity/keycloak.js';
import { startFakeKeycloak, type FakeKeycloak } from './support/oidc-server.js';

interface Discovery {
  issuer: string;
  authorization_endpoint: string;
  token_endpoint: string;
  jwks_uri: string;
  revocation_endpoint: string;
  end_session_endpoint: string;
  userinfo_endpoint: string;
  grant_types_supported: string[];
  code_challenge_methods_supported: string[];
}
/** What the service reads from a token answer, plus what this suite also checks. */
interface TokenSet extends OidcTokenSet {
  scope?: string;
  error?: string;
  error_description?: string;
}

let kc: FakeKeycloak;
let meta: Discovery;
const ada = { email: 'Ada@Example.com', password: 'correct horse' };

const basic = () => `Basic ${Buffer.from(`${kc.clientId}:${kc.clientSecret}`).toString('base64')}`;

async function token(params: Record<string, string>, auth: 'basic' | 'post' = 'basic') {
  const body = new URLSearchParams(params);
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
  if (auth === 'basic') headers.authorization = basic();
  else {
    body.set('client_id', kc.clientId);
    body.set('client_secret', kc.clientSecret);
  }
  const res = await fetch(meta.token_endpoint, { method: 'POST', headers, body });
  return { status: res.status, body: (await res.json()) as TokenSet };
}

const verifyAt = async (jwt: string, audience = kc.clientId) => {
  const { payload, protectedHeader } = await jwtVerify(jwt, createRemoteJWKSet(new URL(meta.jwks_uri)), {
    issuer: kc.issuer,
    audience,
    algorithms: ['RS256'],
  });
  return { payload, protectedHeader };
};

beforeAll(async () => {
  kc = await startFakeKeycloak({ redirectUri: 'http://127.0.0.1:9999/auth/oauth/callback' });
  kc.addUser({ ...ada, name: 'Ada Lovelace', realmRoles: ['admin'], clientRoles: ['developer'], organization: 'Acme' });
  meta = (await (await fetch(`${kc.issuer}/.well-known/openid-configuration`)).json()) as Discovery;
});

afterAll(async () => {
  await kc?.stop();
});

describe('fake Keycloak', () => {
  it('serves discovery at the Keycloak path with the endpoints we use', () => {
    expect(kc.issuer).toBe(`${kc.url}/realms/bud`);
    expect(meta.issuer).toBe(kc.issuer);
    expect(meta.token_endpoint).toBe(`${kc.issuer}/protocol/openid-connect/token`);
    expect(meta.authorization_endpoint).toBe(`${kc.issuer}/protocol/openid-connect/auth`);
    expect(meta.jwks_uri).toBe(`${kc.issuer}/protocol/openid-connect/certs`);
    expect(meta.revocation_endpoint).toBe(`${kc.issuer}/protocol/openid-connect/revoke`);
    expect(meta.end_session_endpoint).toBe(`${kc.issuer}/protocol/openid-connect/logout`);
    expect(meta.grant_types_supported).toEqual(expect.arrayContaining(['authorization_code', 'refresh_token', 'client_credentials', 'password']));
    expect(meta.code_challenge_methods_supported).toEqual(['S256']);
  });

  it('password grant: a Keycloak-shaped RS256 JWT access token, verified through the discovered JWKS', async () => {
    const { status, body } = await token({ grant_type: 'password', username: ada.email, password: ada.password, scope: 'openid profile email' });
    expect(status).toBe(200);
    expect(body).toMatchObject({ token_type: 'Bearer', expires_in: 300, refresh_expires_in: 1800 });
    expect(body.refresh_token).toBeTruthy();
    expect(body.id_token).toBeTruthy();
    const { payload, protectedHeader } = await verifyAt(body.access_token);
    expect(protectedHeader).toMatchObject({ alg: 'RS256', typ: 'JWT', kid: kc.kids[0] });
    const user = kc.users.get('ada@example.com')!;
    expect(payload).toMatchObject({
      iss: kc.issuer,
      sub: user.sub,
      azp: kc.clientId,
      typ: 'Bearer',
      email: 'ada@example.com',
      name: 'Ada Lovelace',
      preferred_username: 'ada@example.com',
      organization: 'Acme',
      resource_access: { [kc.clientId]: { roles: ['developer'] } },
    });
    expect(payload.aud).toEqual(expect.arrayContaining(['account', kc.clientId]));
    expect((payload.realm_access as { roles: string[] }).roles).toContain('admin');
    expect(typeof payload.jti).toBe('string');
    expect(payload.exp! - payload.iat!).toBe(300);
    expect(payload.client_id).toBeUndefined();
    const id = await jwtVerify(body.id_token!, createRemoteJWKSet(new URL(meta.jwks_uri)), { issuer: kc.issuer, audience: kc.clientId });
    expect(id.payload).toMatchObject({ sub: user.sub, typ: 'ID', azp: kc.clientId, email: 'ada@example.com' });
  });

  it('password grant without openid: no id_token; client_secret_post works too', async () => {
    const { status, body } = await token({ grant_type: 'password', username: ada.email, password: ada.password }, 'post');
    expect(status).toBe(200);
    expect(body.id_token).toBeUndefined();
    expect(body.refresh_token).toBeTruthy();
  });

  it('refresh grant rotates the refresh token; reusing the old one fails', async () => {
    const first = await token({ grant_type: 'password', username: ada.email, password: ada.password, scope: 'openid' });
    const second = await token({ grant_type: 'refresh_token', refresh_token: first.body.refresh_token! });
    expect(second.status).toBe(200);
    expect(second.body.refresh_token).toBeTruthy();
    expect(second.body.refresh_token).not.toBe(first.body.refresh_token);
    expect(second.body.id_token).toBeTruthy();
    const { payload } = await verifyAt(second.body.access_token);
    expect(payload).toMatchObject({ sub: kc.users.get('ada@example.com')!.sub, azp: kc.clientId, organization: 'Acme' });
    expect(payload.sid).toBe((await verifyAt(first.body.access_token)).payload.sid); // one session across refreshes
    const reuse = await token({ grant_type: 'refresh_token', refresh_token: first.body.refresh_token! }, 'post');
    expect(reuse.status).toBe(400);
    expect(reuse.body.error).toBe('invalid_grant');
  });

  it('invalid credentials → 400 invalid_grant, like Keycloak', async () => {
    const wrong = await token({ grant_type: 'password', username: ada.email, password: 'nope', scope: 'openid' });
    expect(wrong).toEqual({ status: 400, body: { error: 'invalid_grant', error_description: 'Invalid user credentials' } });
    const unknown = await token({ grant_type: 'password', username: 'ghost@example.com', password: 'x' });
    expect(unknown.status).toBe(400);
    expect(unknown.body.error).toBe('invalid_grant');
    const badClient = await fetch(meta.token_endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${kc.clientId}:wrong`).toString('base64')}` },
      body: new URLSearchParams({ grant_type: 'password', username: ada.email, password: ada.password }),
    });
    expect(badClient.status).toBe(401);
  });

  it('client_credentials: a JWT for the service account', async () => {
    const { status, body } = await token({ grant_type: 'client_credentials' });
    expect(status).toBe(200);
    expect(body.refresh_token).toBeUndefined();
    const { payload } = await verifyAt(body.access_token);
    expect(payload).toMatchObject({
      sub: kc.serviceAccountId,
      azp: kc.clientId,
      typ: 'Bearer',
      preferred_username: `service-account-${kc.clientId}`,
      resource_access: { 'realm-management': { roles: expect.arrayContaining(['manage-users']) } },
    });
  });

  it('authorization code + PKCE: authorize() signs in through the login form; the code trades for tokens with the nonce', async () => {
    const verifier = randomBytes(32).toString('base64url');
    const nonce = randomBytes(16).toString('base64url');
    const state = randomBytes(16).toString('base64url');
    const authUrl = new URL(meta.authorization_endpoint);
    authUrl.search = new URLSearchParams({
      response_type: 'code',
      client_id: kc.clientId,
      redirect_uri: kc.redirectUri,
      scope: 'openid profile email',
      state,
      nonce,
      code_challenge: createHash('sha256').update(verifier).digest('base64url'),
      code_challenge_method: 'S256',
    }).toString();

    await expect(kc.authorize(authUrl.href, { email: ada.email, password: 'wrong' })).rejects.toThrow(/Invalid username or password/);

    const callback = new URL(await kc.authorize(authUrl.href, ada));
    expect(callback.origin + callback.pathname).toBe(kc.redirectUri);
    expect(callback.searchParams.get('state')).toBe(state);
    const code = callback.searchParams.get('code')!;
    expect(code).toBeTruthy();

    const noVerifier = await token({ grant_type: 'authorization_code', code, redirect_uri: kc.redirectUri });
    expect(noVerifier.body.error).toBe('invalid_grant'); // and the code is now spent, like Keycloak

    const again = new URL(await kc.authorize(authUrl.href, ada));
    const { status, body } = await token({ grant_type: 'authorization_code', code: again.searchParams.get('code')!, redirect_uri: kc.redirectUri, code_verifier: verifier });
    expect(status).toBe(200);
    expect(body.refresh_token).toBeTruthy();
    const id = await jwtVerify(body.id_token!, createRemoteJWKSet(new URL(meta.jwks_uri)), { issuer: kc.issuer, audience: kc.clientId });
    expect(id.payload).toMatchObject({ nonce, sub: kc.users.get('ada@example.com')!.sub, email: 'ada@example.com', typ: 'ID' });
    const { payload } = await verifyAt(body.access_token);
    expect(payload).toMatchObject({ azp: kc.clientId, typ: 'Bearer', organization: 'Acme', scope: expect.stringContaining('openid') });
    expect(payload.sid).toMatch(/^[0-9a-f-]{36}$/);
    expect(id.payload.sid).toBe(payload.sid);

    const refreshed = await token({ grant_type: 'refresh_token', refresh_token: body.refresh_token! });
    expect(refreshed.status).toBe(200);

    const userinfo = await fetch(meta.userinfo_endpoint, { headers: { authorization: `Bearer ${refreshed.body.access_token}` } });
    expect(userinfo.status).toBe(200);
    expect(await userinfo.json()).toMatchObject({ email: 'ada@example.com', name: 'Ada Lovelace' });
  });

  it('revocation of a refresh token ends it; end_session is served', async () => {
    const { body } = await token({ grant_type: 'password', username: ada.email, password: ada.password, scope: 'openid' });
    const before = await fetch(meta.userinfo_endpoint, { headers: { authorization: `Bearer ${body.access_token}` } });
    expect(before.status).toBe(200);
    const revoke = await fetch(meta.revocation_endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic() },
      body: new URLSearchParams({ token: body.refresh_token!, token_type_hint: 'refresh_token' }),
    });
    expect(revoke.status).toBe(200);
    const after = await token({ grant_type: 'refresh_token', refresh_token: body.refresh_token! });
    expect(after.body.error).toBe('invalid_grant');
    // like Keycloak, the session is over: userinfo refuses the (still signed and unexpired) access token
    expect((await fetch(meta.userinfo_endpoint, { headers: { authorization: `Bearer ${body.access_token}` } })).status).toBe(401);

    const logout = new URL(meta.end_session_endpoint);
    logout.searchParams.set('id_token_hint', body.id_token!);
    logout.searchParams.set('post_logout_redirect_uri', kc.redirectUri);
    const res = await fetch(logout, { redirect: 'manual' });
    expect(res.status).toBe(200);
    expect(await res.text()).toContain(`${meta.end_session_endpoint}/confirm`);
  });

  it('rotateSigningKey: new tokens carry a new kid, both keys are published, old tokens and refresh tokens stay valid', async () => {
    const before = await token({ grant_type: 'password', username: ada.email, password: ada.password, scope: 'openid' });
    const oldKid = decodeProtectedHeader(before.body.access_token).kid;
    const jwks = createRemoteJWKSet(new URL(meta.jwks_uri));
    const fetchesBefore = kc.jwksFetches;
    await jwtVerify(before.body.access_token, jwks, { issuer: kc.issuer });
    expect(kc.jwksFetches).toBe(fetchesBefore + 1);
    await jwtVerify(before.body.access_token, jwks, { issuer: kc.issuer });
    expect(kc.jwksFetches).toBe(fetchesBefore + 1); // cached by jose

    await kc.rotateSigningKey();
    expect(kc.kids).toHaveLength(2);
    const after = await token({ grant_type: 'refresh_token', refresh_token: before.body.refresh_token! });
    expect(after.status).toBe(200);
    const newKid = decodeProtectedHeader(after.body.access_token).kid;
    expect(newKid).not.toBe(oldKid);
    expect(newKid).toBe(kc.kids[0]);
    expect(decodeProtectedHeader(after.body.id_token!).kid).toBe(newKid);

    const published = ((await (await fetch(meta.jwks_uri)).json()) as { keys: { kid: string; d?: string }[] }).keys;
    expect(published.map((k) => k.kid)).toEqual([newKid, oldKid]);
    expect(published.every((k) => k.d === undefined)).toBe(true);

    // jose's cached set meets an unknown kid and refetches (after its cooldown): the new token verifies.
    const fresh = createRemoteJWKSet(new URL(meta.jwks_uri));
    await jwtVerify(after.body.access_token, fresh, { issuer: kc.issuer });
    await jwtVerify(before.body.access_token, fresh, { issuer: kc.issuer });

    await kc.rotateSigningKey({ dropOld: true });
    const jwksNow = ((await (await fetch(meta.jwks_uri)).json()) as { keys: { kid: string }[] }).keys;
    expect(jwksNow.map((k) => k.kid)).toEqual([kc.kids[0]]);
    await expect(jwtVerify(before.body.access_token, createRemoteJWKSet(new URL(meta.jwks_uri)), { issuer: kc.issuer })).rejects.toThrow();
  });

  it('signToken signs arbitrary claims with the current key', async () => {
    const now = Math.floor(Date.now() / 1000);
    const jwt = await kc.signToken({ iss: kc.issuer, sub: 'x', aud: 'someone-else', iat: now, exp: now + 60 });
    expect(decodeProtectedHeader(jwt)).toMatchObject({ alg: 'RS256', kid: kc.kids[0] });
    const { payload } = await jwtVerify(jwt, createRemoteJWKSet(new URL(meta.jwks_uri)), { issuer: kc.issuer, audience: 'someone-else' });
    expect(payload.sub).toBe('x');
    await expect(verifyAt(jwt)).rejects.toThrow(/aud/);
    expect(decodeProtectedHeader(await kc.signToken({ sub: 'x' }, { kid: 'unknown' })).kid).toBe('unknown');
  });

  it('admin API: 401 without a token; creates, finds and disables users, recording every call', async () => {
    const adminUrl = `${kc.url}/admin/realms/${kc.realm}`;
    const before = kc.adminRequests.length;
    expect((await fetch(`${adminUrl}/users`, { method: 'POST', body: '{}' })).status).toBe(401);

    const userToken = (await token({ grant_type: 'password', username: ada.email, password: ada.password })).body.access_token;
    expect((await fetch(`${adminUrl}/users`, { headers: { authorization: `Bearer ${userToken}` } })).status).toBe(403);

    const sa = (await token({ grant_type: 'client_credentials' })).body.access_token;
    const headers = { authorization: `Bearer ${sa}`, 'content-type': 'application/json' };
    const rep = {
      username: 'grace@example.com',
      email: 'grace@example.com',
      firstName: 'Grace',
      lastName: 'Hopper',
      enabled: true,
      credentials: [{ type: 'password', value: 'cobol', temporary: false }],
    };
    const created = await fetch(`${adminUrl}/users`, { method: 'POST', headers, body: JSON.stringify(rep) });
    expect(created.status).toBe(201);
    const id = created.headers.get('location')!.split('/').pop()!;
    expect(created.headers.get('location')).toBe(`${adminUrl}/users/${id}`);
    expect(kc.users.get('grace@example.com')).toMatchObject({ id, sub: id, enabled: true });
    expect((await fetch(`${adminUrl}/users`, { method: 'POST', headers, body: JSON.stringify(rep) })).status).toBe(409);

    const found = (await (await fetch(`${adminUrl}/users?email=${encodeURIComponent('grace@example.com')}&exact=true`, { headers })).json()) as { id: string }[];
    expect(found.map((u) => u.id)).toEqual([id]);

    const login = await token({ grant_type: 'password', username: 'grace@example.com', password: 'cobol' });
    expect(login.status).toBe(200);
    expect((await verifyAt(login.body.access_token)).payload.sub).toBe(id);

    expect((await fetch(`${adminUrl}/users/${id}`, { method: 'PUT', headers, body: JSON.stringify({ enabled: false }) })).status).toBe(204);
    const disabled = await token({ grant_type: 'password', username: 'grace@example.com', password: 'cobol' });
    expect(disabled.body).toEqual({ error: 'invalid_grant', error_description: 'Account disabled' });
    const refreshDisabled = await token({ grant_type: 'refresh_token', refresh_token: login.body.refresh_token! });
    expect(refreshDisabled.body.error).toBe('invalid_grant');

    await fetch(`${adminUrl}/users/${id}`, { method: 'PUT', headers, body: JSON.stringify({ enabled: true }) });
    expect((await fetch(`${adminUrl}/users/${id}/reset-password`, { method: 'PUT', headers, body: JSON.stringify({ type: 'password', value: 'fortran', temporary: false }) })).status).toBe(204);
    expect((await token({ grant_type: 'password', username: 'grace@example.com', password: 'fortran' })).status).toBe(200);

    const recorded = kc.adminRequests.slice(before);
    expect(recorded[0]).toEqual({ method: 'POST', path: '/admin/realms/bud/users', body: {} });
    expect(recorded[2]).toEqual({ method: 'POST', path: '/admin/realms/bud/users', body: rep, authorization: `Bearer ${sa}` });
    expect(recorded.map((r) => `${r.method} ${r.path}`)).toEqual([
      'POST /admin/realms/bud/users',
      'GET /admin/realms/bud/users',
      'POST /admin/realms/bud/users',
      'POST /admin/realms/bud/users',
      'GET /admin/realms/bud/users?email=grace%40example.com&exact=true',
      `PUT /admin/realms/bud/users/${id}`,
      `PUT /admin/realms/bud/users/${id}`,
      `PUT /admin/realms/bud/users/${id}/reset-password`,
    ]);
    expect(recorded[5]!.body).toEqual({ enabled: false });
  });

  it('stop() refuses connections; start() listens again on the same port', async () => {
    const url = `${kc.issuer}/.well-known/openid-configuration`;
    expect((await fetch(url)).status).toBe(200);
    await kc.stop();
    const err = await fetch(url).then(
      () => undefined,
      (e: unknown) => e as Error & { cause?: { code?: string } },
    );
    expect(err?.cause?.code).toBe('ECONNREFUSED');
    await kc.start();
    const again = (await (await fetch(url)).json()) as Discovery;
    expect(again.issuer).toBe(kc.issuer);
    const { status, body } = await token({ grant_type: 'password', username: ada.email, password: ada.password });
    expect(status).toBe(200);
    const claims: JWTPayload = (await verifyAt(body.access_token)).payload;
    expect(claims.iss).toBe(kc.issuer);
  });

  it('raised no server errors', () => {
    expect(kc.serverErrors).toEqual([]);
  });
});
