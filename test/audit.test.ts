import { and, eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditRecords } from '../src/db/schema/audit.js';
import { redactSecrets } from '../src/lib/audit/actions.js';
import { canonicalJson, GENESIS_HASH, hashAuditRecord } from '../src/lib/audit/canonical.js';
import { hashedFieldsOf } from '../src/domains/audit/chain.js';
import { createTestApp, PASSWORD, uniqueEmail, type TestApp } from './support/app.js';
import { chainRecords, checkpointNow, recordsWhere } from './support/audit.js';

let t: TestApp;
let org: Awaited<ReturnType<TestApp['createOrganization']>>;
beforeAll(async () => {
  t = await createTestApp();
  org = await t.createOrganization('Audited');
});
afterAll(async () => t?.close());

const latest = async (where: ReturnType<typeof and>) => (await recordsWhere(t, where)).at(-1);

describe('what is recorded', () => {
  it('user creation, with a snapshot that never holds the password', async () => {
    const email = uniqueEmail('audited');
    const res = await t.request('POST', '/users', { token: org.admin.token, body: { email, name: 'Audited', role: 'developer', password: PASSWORD } });
    const rec = await latest(and(eq(auditRecords.resourceId, res.body.id), eq(auditRecords.action, 'create')));
    expect(rec).toMatchObject({
      chainId: `org:${org.id}`,
      organizationId: org.id,
      resourceType: 'user',
      userId: org.admin.id,
      actorType: 'user',
      details: { after: { email, name: 'Audited', role: 'developer', status: 'active', organization_id: org.id } },
    });
    expect(rec!.requestId).toBeTruthy();
    expect(JSON.stringify(rec)).not.toContain(PASSWORD);
  });

  it('updates with changed fields old → new, and deactivation as a delete', async () => {
    const user = await t.createUser(org.admin.token, { role: 'tester', name: 'Before' });
    await t.request('PUT', `/users/${user.id}`, { token: org.admin.token, body: { name: 'After', role: 'developer' } });
    const upd = await latest(and(eq(auditRecords.resourceId, user.id), eq(auditRecords.action, 'update')));
    expect(upd!.details).toEqual({ changes: { name: { old: 'Before', new: 'After' }, role: { old: 'tester', new: 'developer' } } });
    await t.request('DELETE', `/users/${user.id}`, { token: org.admin.token });
    const del = await latest(and(eq(auditRecords.resourceId, user.id), eq(auditRecords.action, 'delete')));
    expect(del!.details).toMatchObject({ before: { status: 'active', name: 'After' } });
  });

  it('sign-in events: login, login_failed with a reason (never the password), refresh, reuse, logout', async () => {
    const user = await t.createUser(org.admin.token, { role: 'developer' });
    await t.request('POST', '/auth/login', { body: { email: user.email, password: 'not-the-password-1' } });
    const failed = await latest(and(eq(auditRecords.resourceId, user.id), eq(auditRecords.action, 'login_failed')));
    expect(failed).toMatchObject({ chainId: `org:${org.id}`, details: { reason: 'bad_password', email: user.email }, userId: null });
    expect(JSON.stringify(failed)).not.toContain('not-the-password-1');

    const ghost = uniqueEmail('ghost');
    await t.request('POST', '/auth/login', { body: { email: ghost, password: 'whatever-password-1' } });
    const unknown = await latest(and(eq(auditRecords.action, 'login_failed'), sql`${auditRecords.details}->>'email' = ${ghost}`));
    expect(unknown).toMatchObject({ chainId: 'platform', details: { reason: 'unknown_email' } });

    const session = await t.login(user.email, PASSWORD);
    const login = await latest(and(eq(auditRecords.userId, user.id), eq(auditRecords.action, 'login')));
    expect(login!.resourceType).toBe('session');
    const rotated = await t.request('POST', '/auth/refresh', { body: { refresh_token: session.refresh_token } });
    expect(await latest(and(eq(auditRecords.userId, user.id), eq(auditRecords.action, 'token_refresh')))).toBeDefined();
    await t.request('POST', '/auth/refresh', { body: { refresh_token: session.refresh_token } });
    const reuse = await latest(and(eq(auditRecords.userId, user.id), eq(auditRecords.action, 'refresh_reuse_detected')));
    expect(reuse!.details).toEqual({ family_id: login!.resourceId });
    const fresh = await t.login(user.email, PASSWORD);
    await t.request('POST', '/auth/logout', { token: fresh.access_token, body: { refresh_token: fresh.refresh_token } });
    expect(await latest(and(eq(auditRecords.userId, user.id), eq(auditRecords.action, 'logout')))).toMatchObject({ details: { family_revoked: true } });
    expect(rotated.status).toBe(200);
  });

  it('access denied on administrative operations', async () => {
    const dev = await t.createUser(org.admin.token, { role: 'developer' });
    const res = await t.request('POST', '/users', { token: dev.token, body: { email: uniqueEmail(), name: 'x', role: 'tester' } });
    expect(res.status).toBe(403);
    const denied = await latest(and(eq(auditRecords.userId, dev.id), eq(auditRecords.action, 'access_denied')));
    expect(denied).toMatchObject({ resourceType: 'operation', details: { permission: 'user:manage', operation: 'users.create' } });
  });

  it('organisation creation and the first start on the platform chain', async () => {
    const platform = await chainRecords(t, 'platform');
    expect(platform[0]).toMatchObject({ seq: 1, action: 'create', resourceType: 'organization', actorType: 'system', previousHash: GENESIS_HASH });
    expect(platform.some((r) => r.action === 'create' && r.resourceId === org.id)).toBe(true);
  });
});

describe('atomicity', () => {
  it('a refused change leaves no record, and a recorded change is in the same transaction', async () => {
    const before = (await chainRecords(t, `org:${org.id}`)).length;
    const dup = await t.request('POST', '/users', { token: org.admin.token, body: { email: org.admin.email, name: 'Dup', role: 'tester' } });
    expect(dup.status).toBe(409);
    const lastAdmin = await t.request('PUT', `/users/${org.admin.id}`, { token: t.superAdmin.token, body: { role: 'tester' } });
    expect(lastAdmin.status).toBe(409);
    expect((await chainRecords(t, `org:${org.id}`)).length).toBe(before);
  });

  it('when the audit append fails, the change rolls back too', async () => {
    const { appendAudit } = await import('../src/domains/audit/chain.js');
    const { users } = await import('../src/db/schema/users.js');
    const email = uniqueEmail('rollback');
    const attempt = t.deps.db.transaction(async (db) => {
      await db.insert(users).values({ id: t.deps.ids.uuid(), email, name: 'R', organizationId: org.id, role: 'tester', status: 'invited' });
      const ctx = { db, clock: t.deps.clock, ids: t.deps.ids, log: t.deps.log, deps: t.deps, actor: null, requestId: 'r', ip: 'unknown', userAgent: '' };
      // details that do not fit the action's schema: the append throws, the insert must not survive
      await appendAudit(ctx, { action: 'login', resourceType: 'session', organizationId: org.id, details: { unexpected: true } });
    });
    await expect(attempt).rejects.toThrow();
    const found = await t.deps.db.select().from(users).where(eq(users.email, email));
    expect(found).toEqual([]);
  });
});

describe('the chain', () => {
  it('is gapless and linked, and each hash is SHA-256 over the canonical JSON of the other fields', async () => {
    const rows = await chainRecords(t, `org:${org.id}`);
    expect(rows.length).toBeGreaterThan(5);
    rows.forEach((r, i) => {
      expect(r.seq).toBe(i + 1);
      expect(r.previousHash).toBe(i === 0 ? GENESIS_HASH : rows[i - 1]!.currentHash);
      expect(hashAuditRecord(hashedFieldsOf(r))).toBe(r.currentHash);
    });
  });

  it('canonical JSON follows RFC 8785', () => {
    expect(canonicalJson({ b: 1, a: [true, null, 'x'], c: { z: 1e21, y: 0.1, x: -0 } })).toBe('{"a":[true,null,"x"],"b":1,"c":{"x":0,"y":0.1,"z":1e+21}}');
    expect(canonicalJson({ '\u00e9': 1, e: 2, 'E': 3 })).toBe('{"E":3,"e":2,"é":1}');
    expect(canonicalJson('line\nbreak "q" \u2028')).toBe('"line\\nbreak \\"q\\" \u2028"');
  });

  it('redacts secrets at any depth before hashing', () => {
    expect(redactSecrets({ name: 'n', password: 'p', nested: { api_key: 'k', list: [{ client_secret: 's' }] }, kubeconfig: 'kc' })).toEqual({
      name: 'n',
      password: '[redacted]',
      nested: { api_key: '[redacted]', list: [{ client_secret: '[redacted]' }] },
      kubeconfig: '[redacted]',
    });
  });

  it('is refused UPDATE, DELETE and TRUNCATE by the database itself', async () => {
    await checkpointNow(t);
    const [row] = await chainRecords(t, `org:${org.id}`);
    await expect(t.deps.db.update(auditRecords).set({ action: 'update' }).where(eq(auditRecords.id, row!.id))).rejects.toThrow();
    await expect(t.deps.db.delete(auditRecords).where(eq(auditRecords.id, row!.id))).rejects.toThrow();
    await expect(t.deps.db.execute(sql`truncate audit_records`)).rejects.toThrow();
    await expect(t.deps.db.execute(sql`delete from audit_checkpoints`)).rejects.toThrow();
    expect((await chainRecords(t, `org:${org.id}`))[0]).toEqual(row);
  });
});

describe('GET /audit', () => {
  it('shows admins their organisation only, newest first, with cursor pagination', async () => {
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const res: any = await t.request('GET', `/audit?limit=5${cursor ? `&cursor=${cursor}` : ''}`, { token: org.admin.token });
      expect(res.status).toBe(200);
      for (const r of res.body.items) {
        expect(r.organization_id).toBe(org.id);
        seen.push(r.id);
      }
      cursor = res.body.next_cursor;
    } while (cursor);
    expect([...seen].sort().reverse()).toEqual(seen);
    expect(seen.length).toBe((await chainRecords(t, `org:${org.id}`)).length);
  });

  it('shows other users only their own actions', async () => {
    const dev = await t.createUser(org.admin.token, { role: 'developer' });
    await t.request('POST', '/users', { token: dev.token, body: { email: uniqueEmail(), name: 'x', role: 'tester' } }); // access_denied, own
    const res = await t.request('GET', '/audit', { token: dev.token });
    expect(res.status).toBe(200);
    expect(res.body.items.length).toBeGreaterThan(0);
    expect(res.body.items.every((r: any) => r.user_id === dev.id)).toBe(true);
  });

  it('filters by action, resource, user, time and search', async () => {
    const q = (s: string) => t.request('GET', `/audit?${s}`, { token: org.admin.token });
    const logins = await q('action=login');
    expect(logins.body.items.length).toBeGreaterThan(0);
    expect(logins.body.items.every((r: any) => r.action === 'login')).toBe(true);
    const users = await q('resource_type=user');
    expect(users.body.items.every((r: any) => r.resource_type === 'user')).toBe(true);
    const mine = await q(`user_id=${org.admin.id}`);
    expect(mine.body.items.every((r: any) => r.user_id === org.admin.id)).toBe(true);
    const future = await q(`from=${encodeURIComponent(new Date(Date.now() + 3600_000).toISOString())}`);
    expect(future.body.items).toEqual([]);
    const past = await q(`to=${encodeURIComponent('2000-01-01T00:00:00Z')}`);
    expect(past.body.items).toEqual([]);
    const search = await q(`search=${encodeURIComponent(org.admin.email)}`);
    expect(search.body.items.length).toBeGreaterThan(0);
    expect((await q('action=nope')).status).toBe(400);
  });

  it('lets super admins read any organisation or the platform chain; 404 across organisations for others', async () => {
    const other = await t.createOrganization();
    const asSuper = await t.request('GET', `/audit?organization_id=${other.id}`, { token: t.superAdmin.token });
    expect(asSuper.body.items.length).toBeGreaterThan(0);
    expect(asSuper.body.items.every((r: any) => r.organization_id === other.id)).toBe(true);
    const platform = await t.request('GET', '/audit?organization_id=platform', { token: t.superAdmin.token });
    expect(platform.body.items.every((r: any) => r.chain_id === 'platform')).toBe(true);
    expect((await t.request('GET', `/audit?organization_id=${other.id}`, { token: org.admin.token })).status).toBe(400);
    const foreign = asSuper.body.items[0].id;
    expect((await t.request('GET', `/audit/${foreign}`, { token: org.admin.token })).status).toBe(404);
    expect((await t.request('GET', `/audit/${foreign}`, { token: other.admin.token })).status).toBe(200);
    expect((await t.request('GET', `/audit/${foreign}`, { token: t.superAdmin.token })).status).toBe(200);
  });
});

describe('POST /audit/verify and checkpoints', () => {
  it('reports an intact chain with its head and checked checkpoints, and records itself', async () => {
    await checkpointNow(t);
    const res = await t.request('POST', '/audit/verify', { token: org.admin.token, body: {} });
    expect(res.status).toBe(200);
    const rows = await chainRecords(t, `org:${org.id}`);
    expect(res.body).toMatchObject({ ok: true, chain_id: `org:${org.id}`, first_failure: null, checked: rows.length - 1 });
    expect(res.body.checkpoints_checked).toBeGreaterThanOrEqual(1);
    expect(res.body.head.seq).toBe(rows.length - 1);
    expect(rows.at(-1)).toMatchObject({ action: 'audit_verify', details: { ok: true, first_failure_kind: null } });
  });

  it('verifies a sub-range', async () => {
    const res = await t.request('POST', '/audit/verify', { token: org.admin.token, body: { from_seq: 2, to_seq: 4 } });
    expect(res.body).toMatchObject({ ok: true, checked: 3, range: { from_seq: 2, to_seq: 4 } });
  });

  it('needs audit:view, and organization_id only from super admins', async () => {
    const dev = await t.createUser(org.admin.token, { role: 'developer' });
    expect((await t.request('POST', '/audit/verify', { token: dev.token, body: {} })).status).toBe(403);
    expect((await t.request('POST', '/audit/verify', { token: org.admin.token, body: { organization_id: 'platform' } })).status).toBe(400);
    const platform = await t.request('POST', '/audit/verify', { token: t.superAdmin.token, body: { organization_id: 'platform' } });
    expect(platform.body.ok).toBe(true);
  });

  it('publishes the checkpoint public keys', async () => {
    const res = await t.request('GET', '/audit/public-keys');
    expect(res.status).toBe(200);
    expect(res.body.keys).toEqual([expect.objectContaining({ key_id: t.deps.auditSigner.keyId, algorithm: 'Ed25519', current: true })]);
    expect(res.body.keys[0].public_key_pem).toMatch(/BEGIN PUBLIC KEY/);
    expect(JSON.stringify(res.body)).not.toMatch(/PRIVATE/);
  });

  it('writes a checkpoint every AUDIT_CHECKPOINT_EVERY records', async () => {
    const small = await createTestApp({ AUDIT_CHECKPOINT_EVERY: '3' });
    try {
      const { auditCheckpoints } = await import('../src/db/schema/audit.js');
      for (let i = 0; i < 3; i++) await small.createUser(small.superAdmin.token, { role: 'tester' }); // 2 records each
      await small.deps.auditChainer.chainAll();
      const cps = await small.deps.db.select().from(auditCheckpoints).where(eq(auditCheckpoints.chainId, `org:${small.superAdmin.organizationId}`));
      // login (1), then create + login per user: seq 7 is the head, so checkpoints at 3 and 6
      expect(cps.map((c) => c.seq).sort()).toEqual([3, 6]);
      const rows = await chainRecords(small, `org:${small.superAdmin.organizationId}`);
      for (const c of cps) expect(c.headHash).toBe(rows[c.seq - 1]!.currentHash);
    } finally {
      await small.close();
    }
  });
});
