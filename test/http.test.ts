import { createTRPCClient, httpBatchLink, httpLink, TRPCClientError } from '@trpc/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AppRouter } from '../src/trpc/router.js';
import { createTestApp, type TestApp } from './support/app.js';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp({ BODY_LIMIT_BYTES: '2048' });
});
afterAll(async () => t?.close());

const trpcClient = (token?: string, batch = false) =>
  createTRPCClient<AppRouter>({
    links: [
      (batch ? httpBatchLink : httpLink)({
        url: 'http://budapp.test/trpc',
        headers: token ? { authorization: `Bearer ${token}` } : {},
        fetch: async (url, init) => t.app.request(String(url), init as RequestInit),
      }),
    ],
  });

describe('problem+json errors', () => {
  it('has the RFC 9457 members and echoes the request id', async () => {
    const res = await t.request('GET', '/no/such/path', { headers: { 'x-request-id': 'client-req-0001' } });
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    expect(res.headers.get('x-request-id')).toBe('client-req-0001');
    expect(res.body).toEqual({
      type: expect.stringMatching(/^urn:budapp:problem:/),
      title: 'Not Found',
      status: 404,
      detail: expect.any(String),
      request_id: 'client-req-0001',
    });
  });

  it('replaces an insane x-request-id with a generated one', async () => {
    for (const bad of ['short', 'has spaces in it', 'x'.repeat(200), '<script>alert(1)</script>']) {
      const res = await t.request('GET', '/health', { headers: { 'x-request-id': bad } });
      const id = res.headers.get('x-request-id');
      expect(id).not.toBe(bad);
      expect(id).toMatch(/^[0-9a-f-]{36}$/);
    }
  });

  it('puts the request id in the log line of the request', async () => {
    await t.request('GET', '/health', { headers: { 'x-request-id': 'log-trace-42abc' } });
    const line = t.logs.find((l) => l.includes('"request_id":"log-trace-42abc"'));
    expect(line).toBeDefined();
    expect(JSON.parse(line!)).toMatchObject({ method: 'GET', path: '/health', status: 200 });
  });

  it('answers 405 with Allow for a known path and a wrong method', async () => {
    const res = await t.request('PATCH', '/users', { token: t.superAdmin.token, body: {} });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('GET, POST');
  });

  it('answers 413 for a body over the limit, before touching state', async () => {
    const res = await t.request('POST', '/organizations', { token: t.superAdmin.token, body: { name: 'x'.repeat(4096) } });
    expect(res.status).toBe(413);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
  });

  it('answers 415 for a non-JSON body and 400 for malformed JSON or a non-object', async () => {
    const form = await t.request('POST', '/auth/login', { rawBody: 'email=a&password=b', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    expect(form.status).toBe(415);
    const broken = await t.request('POST', '/auth/login', { rawBody: '{"email":', headers: { 'content-type': 'application/json' } });
    expect(broken.status).toBe(400);
    const array = await t.request('POST', '/auth/login', { rawBody: '[1,2]', headers: { 'content-type': 'application/json' } });
    expect(array.status).toBe(400);
  });

  it('names every missing field', async () => {
    const res = await t.request('POST', '/users', { token: t.superAdmin.token, body: {} });
    expect(res.status).toBe(400);
    expect(res.body.errors.map((e: any) => e.field).sort()).toEqual(['email', 'name']);
    expect(res.body.detail).toMatch(/email/);
  });

  it('parses ?limit as a number and paths with a trailing slash', async () => {
    const res = await t.request('GET', '/users/?limit=1', { token: t.superAdmin.token });
    expect(res.status).toBe(200);
    expect(res.body.items).toHaveLength(1);
  });

  it('returns a bland 500 without internals when the database is gone', async () => {
    const broken = await createTestApp();
    const token = broken.superAdmin.token;
    await broken.deps.database.close();
    const res = await broken.app.request('/users', { headers: { authorization: `Bearer ${token}` } });
    const body = (await res.json()) as Record<string, unknown>;
    expect(res.status).toBe(500);
    expect(body).toMatchObject({ status: 500, title: 'Internal Server Error' });
    expect(JSON.stringify(body)).not.toMatch(/stack|closed|pglite|postgres|select|at \w+ \(/i);
    expect(broken.logs.some((l) => l.includes('"level":"error"'))).toBe(true);
    const ready = await broken.app.request('/ready');
    expect(ready.status).toBe(503);
    await broken.close().catch(() => {});
  });
});

describe('health and readiness', () => {
  it('are public', async () => {
    expect((await t.request('GET', '/health')).body).toEqual({ status: 'ok' });
    const ready = await t.request('GET', '/ready');
    expect(ready.status).toBe(200);
    expect(ready.body).toEqual({ status: 'ready', checks: { database: 'ok', migrations: 'current' } });
  });
});

describe('REST and tRPC serve the same router', () => {
  it('return the same data for the same read', async () => {
    const client = trpcClient(t.superAdmin.token);
    const viaTrpc = await client.users.get.query({ id: t.superAdmin.id });
    const viaRest = await t.request('GET', `/users/${t.superAdmin.id}`, { token: t.superAdmin.token });
    expect(viaRest.body).toEqual(viaTrpc);
    const meTrpc = await client.auth.me.query({});
    const meRest = await t.request('GET', '/auth/me', { token: t.superAdmin.token });
    expect(meRest.body).toEqual(meTrpc);
  });

  it('answers single GET queries (fast path) exactly like the standard adapter does in a batch', async () => {
    const input = encodeURIComponent(JSON.stringify({ id: t.superAdmin.id }));
    const single = await t.request('GET', `/trpc/users.get?input=${input}`, { token: t.superAdmin.token });
    const batch = await t.request('GET', `/trpc/users.get?batch=1&input=${encodeURIComponent(JSON.stringify({ 0: { id: t.superAdmin.id } }))}`, {
      token: t.superAdmin.token,
    });
    expect(single.status).toBe(200);
    expect(single.body).toEqual(batch.body[0]);
    const bad = encodeURIComponent(JSON.stringify({ id: 'nope' }));
    const singleErr = await t.request('GET', `/trpc/users.get?input=${bad}`, { token: t.superAdmin.token });
    const batchErr = await t.request('GET', `/trpc/users.get?batch=1&input=${encodeURIComponent(JSON.stringify({ 0: { id: 'nope' } }))}`, {
      token: t.superAdmin.token,
    });
    expect(singleErr.status).toBe(400);
    const strip = (e: any) => ({ ...e, error: { ...e.error, data: { ...e.error.data, problem: { ...e.error.data.problem, request_id: null } } } });
    expect(strip(singleErr.body)).toEqual(strip(batchErr.body[0]));
    expect(singleErr.body.error.data.code).toBe('BAD_REQUEST');
  });

  it('works with batched tRPC calls', async () => {
    const client = trpcClient(t.superAdmin.token, true);
    const [me, list] = await Promise.all([client.auth.me.query({}), client.users.list.query({ limit: 1 })]);
    expect(me.user.id).toBe(t.superAdmin.id);
    expect(list.items).toHaveLength(1);
  });

  it('carries the same problem in tRPC errors, with the HTTP status', async () => {
    const client = trpcClient(t.superAdmin.token);
    const err = await client.users.get.query({ id: 'nope' }).catch((e) => e);
    expect(err).toBeInstanceOf(TRPCClientError);
    expect(err.data.httpStatus).toBe(400);
    expect(err.data.problem.errors).toContainEqual(expect.objectContaining({ field: 'id' }));
    expect(err.data).not.toHaveProperty('stack');
    const anonymous = await trpcClient().auth.me.query({}).catch((e) => e);
    expect(anonymous.data.httpStatus).toBe(401);
    expect(anonymous.data.problem.status).toBe(401);
  });

  it('signs in over tRPC like over REST', async () => {
    const res = await trpcClient().auth.login.mutate({ email: 'root@bud.test', password: 'correct-horse-battery-staple' });
    expect(res.token_type).toBe('Bearer');
  });
});
