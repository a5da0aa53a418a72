import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, PASSWORD, SUPER_EMAIL, uniqueEmail, type TestApp } from './support/app.js';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp({
    RATE_LIMIT_ENABLED: 'true',
    TRUST_PROXY: 'true',
    LOGIN_RATE_LIMIT_PER_IP: '6',
    LOGIN_RATE_LIMIT_PER_ACCOUNT: '3',
    LOGIN_RATE_LIMIT_WINDOW_SECONDS: '60',
  });
});
afterAll(async () => t?.close());

let ipCounter = 0;
const freshIp = () => `203.0.113.${++ipCounter}`;
const attempt = (email: string, password: string, ip: string) =>
  t.request('POST', '/auth/login', { body: { email, password }, headers: { 'x-forwarded-for': `${ip}, 10.0.0.1` } });

describe('login rate limiting', () => {
  it('limits attempts per account, even with the right password, then lets the window pass', async () => {
    const email = uniqueEmail('limited');
    const created = await t.request('POST', '/users', { token: t.superAdmin.token, body: { email, name: 'Limited', role: 'tester', password: PASSWORD } });
    expect(created.status).toBe(201);
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) statuses.push((await attempt(email, 'wrong-password-000', freshIp())).status);
    expect(statuses).toEqual([401, 401, 401]);
    const limited = await attempt(email, PASSWORD, freshIp());
    expect(limited.status).toBe(429);
    expect(limited.headers.get('content-type')).toBe('application/problem+json');
    const retryAfter = Number(limited.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(60);
    t.clock.advance(61);
    expect((await attempt(email, PASSWORD, freshIp())).status).toBe(200);
  });

  it('limits attempts per IP across accounts', async () => {
    const ip = freshIp();
    const statuses: number[] = [];
    for (let i = 0; i < 7; i++) statuses.push((await attempt(uniqueEmail(), 'wrong-password-000', ip)).status);
    expect(statuses.slice(0, 6)).toEqual([401, 401, 401, 401, 401, 401]);
    expect(statuses[6]).toBe(429);
    // Another address is not affected.
    expect((await attempt(uniqueEmail(), 'wrong-password-000', freshIp())).status).toBe(401);
  });

  it('counts unknown accounts like real ones (no enumeration through the limiter)', async () => {
    const ghost = uniqueEmail('ghost');
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await attempt(ghost, 'wrong-password-000', freshIp())).status);
    expect(statuses).toEqual([401, 401, 401, 429]);
  });
});

describe('without TRUST_PROXY', () => {
  it('ignores X-Forwarded-For, so a client cannot pick a fresh address per attempt', async () => {
    // The harness's own sign-in is the first attempt from this address.
    const direct = await createTestApp({ RATE_LIMIT_ENABLED: 'true', LOGIN_RATE_LIMIT_PER_IP: '4', LOGIN_RATE_LIMIT_PER_ACCOUNT: '100' });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 4; i++) {
        const res = await direct.request('POST', '/auth/login', {
          body: { email: uniqueEmail(), password: 'wrong-password-000' },
          headers: { 'x-forwarded-for': freshIp() },
        });
        statuses.push(res.status);
      }
      expect(statuses).toEqual([401, 401, 401, 429]);
    } finally {
      await direct.close();
    }
  });
});

describe('RATE_LIMIT_ENABLED=false', () => {
  it('turns limiting off', async () => {
    const open = await createTestApp({ RATE_LIMIT_ENABLED: 'false', LOGIN_RATE_LIMIT_PER_IP: '1', LOGIN_RATE_LIMIT_PER_ACCOUNT: '1' });
    try {
      for (let i = 0; i < 4; i++) {
        expect((await open.request('POST', '/auth/login', { body: { email: SUPER_EMAIL, password: 'wrong-password-000' } })).status).toBe(401);
      }
    } finally {
      await open.close();
    }
  });
});
