import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, PASSWORD, SUPER_EMAIL, SUPER_PASSWORD, uniqueEmail, type TestApp } from './support/app.js';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(async () => t?.close());

describe('POST /auth/login', () => {
  it('returns a Keycloak-shaped token pair and the user', async () => {
    const res = await t.request('POST', '/auth/login', { body: { email: SUPER_EMAIL, password: SUPER_PASSWORD } });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ token_type: 'Bearer', expires_in: 900, refresh_expires_in: 7 * 24 * 3600 });
    expect(res.body.access_token.split('.')).toHaveLength(3);
    expect(res.body.refresh_token).toMatch(/^rt_[A-Za-z0-9_-]{43}$/);
    expect(res.body.user).toMatchObject({ email: SUPER_EMAIL, role: 'super_admin', is_active: true });
    expect(res.body.user).not.toHaveProperty('password_hash');
  });

  it('matches emails case-insensitively', async () => {
    const res = await t.request('POST', '/auth/login', { body: { email: SUPER_EMAIL.toUpperCase(), password: SUPER_PASSWORD } });
    expect(res.status).toBe(200);
  });

  it('answers an unknown email and a wrong password identically', async () => {
    const unknown = await t.request('POST', '/auth/login', { body: { email: uniqueEmail(), password: 'whatever-password-1' } });
    const wrong = await t.request('POST', '/auth/login', { body: { email: SUPER_EMAIL, password: 'whatever-password-1' } });
    expect(unknown.status).toBe(401);
    expect(wrong.status).toBe(401);
    const strip = (b: any) => ({ ...b, request_id: undefined });
    expect(strip(unknown.body)).toEqual(strip(wrong.body));
    expect(unknown.headers.get('content-type')).toBe(wrong.headers.get('content-type'));
  });

  it('takes similar time for an unknown email and a wrong password', async () => {
    const time = async (email: string) => {
      const started = performance.now();
      await t.request('POST', '/auth/login', { body: { email, password: 'whatever-password-1' } });
      return performance.now() - started;
    };
    await time(SUPER_EMAIL); // warm up
    const samples = { unknown: [] as number[], known: [] as number[] };
    for (let i = 0; i < 5; i++) {
      samples.unknown.push(await time(uniqueEmail()));
      samples.known.push(await time(SUPER_EMAIL));
    }
    const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    // Both pay for one scrypt evaluation; without the dummy hash an unknown email answers ~50x faster.
    expect(median(samples.unknown)).toBeGreaterThan(median(samples.known) / 3);
  });

  it('rejects a body with unknown fields, naming them', async () => {
    const res = await t.request('POST', '/auth/login', { body: { email: SUPER_EMAIL, password: SUPER_PASSWORD, role: 'admin' } });
    expect(res.status).toBe(400);
    expect(res.body.errors).toContainEqual(expect.objectContaining({ field: 'role' }));
  });

  it('rejects a malformed email with a field error', async () => {
    const res = await t.request('POST', '/auth/login', { body: { email: 'not-an-email', password: 'x' } });
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    expect(res.body.errors).toContainEqual(expect.objectContaining({ field: 'email' }));
  });
});

describe('GET /auth/me', () => {
  it('returns the user, organisation, role and effective permissions', async () => {
    const res = await t.request('GET', '/auth/me', { token: t.superAdmin.token });
    expect(res.status).toBe(200);
    expect(res.body.user.id).toBe(t.superAdmin.id);
    expect(res.body.organization.id).toBe(t.superAdmin.organizationId);
    expect(res.body.role).toBe('super_admin');
    expect(res.body.permissions).toContain('organization:manage');
  });

  it('requires a bearer token', async () => {
    const res = await t.request('GET', '/auth/me');
    expect(res.status).toBe(401);
    expect(res.body).toMatchObject({ status: 401, title: 'Unauthorized' });
  });

  it('accepts the bearer scheme case-insensitively and with surrounding whitespace', async () => {
    const res = await t.request('GET', '/auth/me', { headers: { authorization: `  bearer   ${t.superAdmin.token} ` } });
    expect(res.status).toBe(200);
  });
});

describe('POST /auth/refresh', () => {
  it('rotates: the new pair works, the old refresh token does not', async () => {
    const first = await t.login(SUPER_EMAIL, SUPER_PASSWORD);
    const second = await t.request('POST', '/auth/refresh', { body: { refresh_token: first.refresh_token } });
    expect(second.status).toBe(200);
    expect(second.body.refresh_token).not.toBe(first.refresh_token);
    expect((await t.request('GET', '/auth/me', { token: second.body.access_token })).status).toBe(200);
    const third = await t.request('POST', '/auth/refresh', { body: { refresh_token: second.body.refresh_token } });
    expect(third.status).toBe(200);
  });

  it('revokes the whole family when a used refresh token is replayed, and records it', async () => {
    const first = await t.login(SUPER_EMAIL, SUPER_PASSWORD);
    const second = await t.request('POST', '/auth/refresh', { body: { refresh_token: first.refresh_token } });
    expect(second.status).toBe(200);
    const replay = await t.request('POST', '/auth/refresh', { body: { refresh_token: first.refresh_token } });
    expect(replay.status).toBe(401);
    // The legitimate-looking latest token is dead too: the family is revoked.
    const latest = await t.request('POST', '/auth/refresh', { body: { refresh_token: second.body.refresh_token } });
    expect(latest.status).toBe(401);
    expect(t.logs.some((l) => l.includes('"event":"refresh_reuse_detected"'))).toBe(true);
  });

  it('rejects an unknown refresh token with 401', async () => {
    const res = await t.request('POST', '/auth/refresh', { body: { refresh_token: 'rt_nope' } });
    expect(res.status).toBe(401);
  });

  it('rejects an expired refresh token', async () => {
    const session = await t.login(SUPER_EMAIL, SUPER_PASSWORD);
    t.clock.advance(t.config.auth.refreshTokenTtlSeconds + 1);
    try {
      const res = await t.request('POST', '/auth/refresh', { body: { refresh_token: session.refresh_token } });
      expect(res.status).toBe(401);
    } finally {
      t.clock.advance(-(t.config.auth.refreshTokenTtlSeconds + 1));
    }
  });
});

describe('POST /auth/logout', () => {
  it('revokes the refresh family and the presented access token at once', async () => {
    const session = await t.login(SUPER_EMAIL, SUPER_PASSWORD);
    const out = await t.request('POST', '/auth/logout', { token: session.access_token, body: { refresh_token: session.refresh_token } });
    expect(out.status).toBe(200);
    expect(out.body).toEqual({ logged_out: true });
    expect((await t.request('GET', '/auth/me', { token: session.access_token })).status).toBe(401);
    expect((await t.request('POST', '/auth/refresh', { body: { refresh_token: session.refresh_token } })).status).toBe(401);
  });

  it('does not let one user revoke another user’s refresh token', async () => {
    const victim = await t.createUser(t.superAdmin.token, { role: 'developer' });
    const attacker = await t.login(SUPER_EMAIL, SUPER_PASSWORD);
    await t.request('POST', '/auth/logout', { token: attacker.access_token, body: { refresh_token: victim.refresh_token } });
    expect((await t.request('POST', '/auth/refresh', { body: { refresh_token: victim.refresh_token } })).status).toBe(200);
  });

  it('requires the access token', async () => {
    const session = await t.login(SUPER_EMAIL, SUPER_PASSWORD);
    const res = await t.request('POST', '/auth/logout', { body: { refresh_token: session.refresh_token } });
    expect(res.status).toBe(401);
  });
});

describe('deactivated users', () => {
  it('lose access at once: no requests, no refresh, no sign-in', async () => {
    const user = await t.createUser(t.superAdmin.token, { role: 'developer' });
    expect((await t.request('GET', '/auth/me', { token: user.token })).status).toBe(200);
    const del = await t.request('DELETE', `/users/${user.id}`, { token: t.superAdmin.token });
    expect(del.status).toBe(200);
    expect(del.body.status).toBe('deactivated');
    expect((await t.request('GET', '/auth/me', { token: user.token })).status).toBe(401);
    expect((await t.request('POST', '/auth/refresh', { body: { refresh_token: user.refresh_token } })).status).toBe(401);
    const signIn = await t.request('POST', '/auth/login', { body: { email: user.email, password: PASSWORD } });
    expect(signIn.status).toBe(403);
    expect(signIn.body.detail).toMatch(/deactivated/);
  });

  it('a deactivated user with a wrong password learns nothing about the account state', async () => {
    const user = await t.createUser(t.superAdmin.token, { role: 'developer' });
    await t.request('DELETE', `/users/${user.id}`, { token: t.superAdmin.token });
    const res = await t.request('POST', '/auth/login', { body: { email: user.email, password: 'wrong-password-123' } });
    expect(res.status).toBe(401);
  });

  it('invited users (no password) cannot sign in', async () => {
    const email = uniqueEmail('invited');
    const created = await t.request('POST', '/users', { token: t.superAdmin.token, body: { email, name: 'Invitee', role: 'tester' } });
    expect(created.body.status).toBe('invited');
    const res = await t.request('POST', '/auth/login', { body: { email, password: 'anything-at-all-1' } });
    expect(res.status).toBe(401);
  });
});

describe('secrets', () => {
  it('never writes passwords or tokens to the log', async () => {
    const session = await t.login(SUPER_EMAIL, SUPER_PASSWORD);
    await t.request('POST', '/auth/login', { body: { email: SUPER_EMAIL, password: 'a-wrong-password-xyz' } });
    await t.request('POST', '/auth/refresh', { body: { refresh_token: session.refresh_token } });
    const all = t.logs.join('\n');
    expect(all).not.toContain(SUPER_PASSWORD);
    expect(all).not.toContain('a-wrong-password-xyz');
    expect(all).not.toContain(session.refresh_token);
    expect(all).not.toContain(session.access_token);
  });
});
