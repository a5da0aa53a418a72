import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, PASSWORD, uniqueEmail, type TestApp } from './support/app.js';

let t: TestApp;
let orgA: Awaited<ReturnType<TestApp['createOrganization']>>;
let orgB: Awaited<ReturnType<TestApp['createOrganization']>>;

beforeAll(async () => {
  t = await createTestApp();
  orgA = await t.createOrganization('Acme');
  orgB = await t.createOrganization('Globex');
});
afterAll(async () => t?.close());

describe('POST /users', () => {
  it('creates an active user when a password is given, invited otherwise', async () => {
    const active = await t.request('POST', '/users', {
      token: orgA.admin.token,
      body: { email: uniqueEmail(), name: 'Ada', role: 'developer', password: PASSWORD },
    });
    expect(active.status).toBe(201);
    expect(active.body).toMatchObject({ status: 'active', is_active: true, role: 'developer', organization_id: orgA.id, keycloak_id: null });
    expect(active.body).not.toHaveProperty('password');
    expect(active.body).not.toHaveProperty('password_hash');
    const invited = await t.request('POST', '/users', { token: orgA.admin.token, body: { email: uniqueEmail(), name: 'Bob', role: 'tester' } });
    expect(invited.status).toBe(201);
    expect(invited.body.status).toBe('invited');
  });

  it('enforces the password policy with a field error', async () => {
    const res = await t.request('POST', '/users', {
      token: orgA.admin.token,
      body: { email: uniqueEmail(), name: 'Short', role: 'developer', password: 'short' },
    });
    expect(res.status).toBe(400);
    expect(res.body.errors).toEqual([expect.objectContaining({ field: 'password', message: expect.stringMatching(/12 characters/) })]);
  });

  it('keeps emails unique case-insensitively', async () => {
    const email = uniqueEmail('dup');
    const first = await t.request('POST', '/users', { token: orgA.admin.token, body: { email, name: 'One', role: 'tester' } });
    expect(first.status).toBe(201);
    const again = await t.request('POST', '/users', { token: orgB.admin.token, body: { email: email.toUpperCase(), name: 'Two', role: 'tester' } });
    expect(again.status).toBe(409);
  });

  it('rejects unknown and privileged fields (no mass assignment)', async () => {
    for (const extra of [{ status: 'active' }, { id: '00000000-0000-7000-8000-000000000000' }, { is_superuser: true }, { created_at: '2020-01-01T00:00:00Z' }]) {
      const res = await t.request('POST', '/users', {
        token: orgA.admin.token,
        body: { email: uniqueEmail(), name: 'Mallory', role: 'developer', ...extra },
      });
      expect(res.status, JSON.stringify(extra)).toBe(400);
      expect(res.body.errors).toContainEqual(expect.objectContaining({ field: Object.keys(extra)[0] }));
    }
  });

  it('lets only a super admin choose organization_id', async () => {
    const res = await t.request('POST', '/users', {
      token: orgA.admin.token,
      body: { email: uniqueEmail(), name: 'Sneaky', role: 'developer', organization_id: orgB.id },
    });
    expect(res.status).toBe(400);
    expect(res.body.errors).toContainEqual(expect.objectContaining({ field: 'organization_id' }));
    const bySuper = await t.request('POST', '/users', {
      token: t.superAdmin.token,
      body: { email: uniqueEmail(), name: 'Placed', role: 'developer', organization_id: orgB.id },
    });
    expect(bySuper.status).toBe(201);
    expect(bySuper.body.organization_id).toBe(orgB.id);
  });

  it('never grants a role above the creator’s own', async () => {
    const res = await t.request('POST', '/users', { token: orgA.admin.token, body: { email: uniqueEmail(), name: 'Up', role: 'super_admin' } });
    expect(res.status).toBe(403);
    const devops = await t.createUser(orgA.admin.token, { role: 'devops' });
    const byDevops = await t.request('POST', '/users', { token: devops.token, body: { email: uniqueEmail(), name: 'X', role: 'developer' } });
    expect(byDevops.status).toBe(403);
  });

  it('leaves no user behind when the request is refused', async () => {
    const email = uniqueEmail('refused');
    await t.request('POST', '/users', { token: orgA.admin.token, body: { email, name: 'Nope', role: 'super_admin' } });
    const list = await t.request('GET', `/users?search=${encodeURIComponent(email)}`, { token: orgA.admin.token });
    expect(list.body.items).toEqual([]);
  });
});

describe('GET /users', () => {
  it('lists only the caller’s organisation, newest first, with cursor pagination', async () => {
    for (let i = 0; i < 5; i++) await t.createUser(orgB.admin.token, { role: 'tester', name: `Pager ${i}` });
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const res: any = await t.request('GET', `/users?limit=2${cursor ? `&cursor=${cursor}` : ''}`, { token: orgB.admin.token });
      expect(res.status).toBe(200);
      expect(res.body.items.length).toBeLessThanOrEqual(2);
      for (const u of res.body.items) {
        expect(u.organization_id).toBe(orgB.id);
        seen.push(u.id);
      }
      cursor = res.body.next_cursor;
    } while (cursor);
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen.length).toBeGreaterThanOrEqual(6);
    expect([...seen].sort().reverse()).toEqual(seen);
  });

  it('filters by role, status and search', async () => {
    const email = uniqueEmail('findme');
    await t.createUser(orgA.admin.token, { role: 'devops', email, name: 'Grace Hopper' });
    const byRole = await t.request('GET', '/users?role=devops', { token: orgA.admin.token });
    expect(byRole.body.items.every((u: any) => u.role === 'devops')).toBe(true);
    const bySearch = await t.request('GET', '/users?search=grace%20HOP', { token: orgA.admin.token });
    expect(bySearch.body.items.map((u: any) => u.email)).toEqual([email]);
    const byStatus = await t.request('GET', '/users?status=invited', { token: orgA.admin.token });
    expect(byStatus.body.items.every((u: any) => u.status === 'invited')).toBe(true);
  });

  it('treats LIKE wildcards in search literally', async () => {
    const res = await t.request('GET', '/users?search=%25', { token: orgA.admin.token });
    expect(res.status).toBe(200);
    expect(res.body.items).toEqual([]);
  });

  it('rejects bad query values with field errors', async () => {
    for (const [query, field] of [
      ['limit=0', 'limit'],
      ['limit=101', 'limit'],
      ['limit=abc', 'limit'],
      ['role=root', 'role'],
      ['cursor=bogus', 'cursor'],
      ['colour=red', 'colour'],
    ]) {
      const res = await t.request('GET', `/users?${query}`, { token: orgA.admin.token });
      expect(res.status, query).toBe(400);
      expect(res.body.errors.map((e: any) => e.field), query).toContain(field);
    }
  });

  it('lets a super admin list another organisation but nobody else', async () => {
    const bySuper = await t.request('GET', `/users?organization_id=${orgA.id}`, { token: t.superAdmin.token });
    expect(bySuper.status).toBe(200);
    expect(bySuper.body.items.every((u: any) => u.organization_id === orgA.id)).toBe(true);
    const byAdmin = await t.request('GET', `/users?organization_id=${orgA.id}`, { token: orgB.admin.token });
    expect(byAdmin.status).toBe(400);
  });
});

describe('cross-organisation access', () => {
  it('answers 404 for another organisation’s user on every user route, and changes nothing', async () => {
    const victim = await t.createUser(orgA.admin.token, { role: 'developer', name: 'Victim' });
    const token = orgB.admin.token;
    const calls: Array<[string, string, unknown?]> = [
      ['GET', `/users/${victim.id}`],
      ['GET', `/users/${victim.id}/roles`],
      ['PUT', `/users/${victim.id}`, { name: 'Hacked', role: 'tester', is_active: false }],
      ['DELETE', `/users/${victim.id}`],
    ];
    for (const [method, path, body] of calls) {
      const res = await t.request(method, path, { token, body });
      expect(res.status, `${method} ${path}`).toBe(404);
    }
    const after = await t.request('GET', `/users/${victim.id}`, { token: orgA.admin.token });
    expect(after.body).toMatchObject({ name: 'Victim', role: 'developer', status: 'active' });
    expect((await t.request('GET', '/auth/me', { token: victim.token })).status).toBe(200);
  });

  it('answers 404 for an id that does not exist, and 400 for one that is not a UUID', async () => {
    expect((await t.request('GET', '/users/01a2198b-0000-7000-8000-000000000000', { token: orgA.admin.token })).status).toBe(404);
    const bad = await t.request('GET', '/users/not-a-uuid', { token: orgA.admin.token });
    expect(bad.status).toBe(400);
    expect(bad.body.errors).toContainEqual(expect.objectContaining({ field: 'id' }));
  });
});

describe('PUT /users/{id} and DELETE /users/{id}', () => {
  it('updates name and role, and the new role applies to the next request', async () => {
    const user = await t.createUser(orgA.admin.token, { role: 'tester' });
    expect((await t.request('GET', '/users', { token: user.token })).status).toBe(200);
    expect((await t.request('POST', '/users', { token: user.token, body: { email: uniqueEmail(), name: 'n', role: 'tester' } })).status).toBe(403);
    const res = await t.request('PUT', `/users/${user.id}`, { token: orgA.admin.token, body: { name: 'Promoted', role: 'admin' } });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ name: 'Promoted', role: 'admin' });
    const me = await t.request('GET', '/auth/me', { token: user.token });
    expect(me.body.role).toBe('admin');
    expect((await t.request('POST', '/users', { token: user.token, body: { email: uniqueEmail(), name: 'n', role: 'tester' } })).status).toBe(201);
  });

  it('refuses to let anyone deactivate themselves', async () => {
    const res = await t.request('DELETE', `/users/${orgA.admin.id}`, { token: orgA.admin.token });
    expect(res.status).toBe(409);
    const put = await t.request('PUT', `/users/${orgA.admin.id}`, { token: orgA.admin.token, body: { is_active: false } });
    expect(put.status).toBe(409);
  });

  it('refuses to remove the last admin of an organisation, by demotion or deactivation', async () => {
    const org = await t.createOrganization();
    const demote = await t.request('PUT', `/users/${org.admin.id}`, { token: t.superAdmin.token, body: { role: 'developer' } });
    expect(demote.status).toBe(409);
    expect(demote.body.detail).toMatch(/last admin/);
    const deactivate = await t.request('DELETE', `/users/${org.admin.id}`, { token: t.superAdmin.token });
    expect(deactivate.status).toBe(409);
    // With a second admin in place, the first may go.
    await t.createUser(org.admin.token, { role: 'admin' });
    expect((await t.request('PUT', `/users/${org.admin.id}`, { token: t.superAdmin.token, body: { role: 'developer' } })).status).toBe(200);
  });

  it('does not let an admin modify or promote above their own role', async () => {
    const promote = await t.request('PUT', `/users/${orgA.admin.id}`, { token: orgA.admin.token, body: { role: 'super_admin' } });
    expect(promote.status).toBe(403);
    const touchSuper = await t.request('PUT', `/users/${t.superAdmin.id}`, { token: t.superAdmin.token, body: {} });
    expect(touchSuper.status).toBe(200);
  });

  it('lets a deactivated user be reactivated and sign in again', async () => {
    const user = await t.createUser(orgA.admin.token, { role: 'developer' });
    expect((await t.request('DELETE', `/users/${user.id}`, { token: orgA.admin.token })).body.is_active).toBe(false);
    const back = await t.request('PUT', `/users/${user.id}`, { token: orgA.admin.token, body: { is_active: true } });
    expect(back.body).toMatchObject({ status: 'active', is_active: true });
    expect((await t.request('POST', '/auth/login', { body: { email: user.email, password: PASSWORD } })).status).toBe(200);
  });

  it('rejects updates of fields that are not editable', async () => {
    const user = await t.createUser(orgA.admin.token, { role: 'developer' });
    const res = await t.request('PUT', `/users/${user.id}`, { token: orgA.admin.token, body: { organization_id: orgB.id } });
    expect(res.status).toBe(400);
    expect(res.body.errors).toContainEqual(expect.objectContaining({ field: 'organization_id' }));
    const email = await t.request('PUT', `/users/${user.id}`, { token: orgA.admin.token, body: { email: 'x@example.test' } });
    expect(email.status).toBe(400);
  });

  it('requires user:manage', async () => {
    const dev = await t.createUser(orgA.admin.token, { role: 'developer' });
    const other = await t.createUser(orgA.admin.token, { role: 'tester' });
    expect((await t.request('PUT', `/users/${other.id}`, { token: dev.token, body: { name: 'x' } })).status).toBe(403);
    expect((await t.request('DELETE', `/users/${other.id}`, { token: dev.token })).status).toBe(403);
  });
});

describe('GET /users/{id}/roles', () => {
  it('lists the role, its effective permissions and project memberships', async () => {
    const dev = await t.createUser(orgA.admin.token, { role: 'developer' });
    const res = await t.request('GET', `/users/${dev.id}/roles`, { token: orgA.admin.token });
    expect(res.status).toBe(200);
    expect(res.body.role).toBe('developer');
    expect(res.body.permissions).toContain('endpoint:manage');
    expect(res.body.permissions).not.toContain('user:manage');
    expect(res.body.project_memberships).toEqual([]);
  });
});

describe('organisations', () => {
  it('are listed and created by super admins only', async () => {
    const list = await t.request('GET', '/organizations', { token: t.superAdmin.token });
    expect(list.status).toBe(200);
    expect(list.body.items.map((o: any) => o.name)).toEqual(expect.arrayContaining(['Acme', 'Globex', 'Default']));
    expect((await t.request('GET', '/organizations', { token: orgA.admin.token })).status).toBe(403);
    expect((await t.request('POST', '/organizations', { token: orgA.admin.token, body: { name: 'Mine' } })).status).toBe(403);
  });

  it('keep names unique case-insensitively', async () => {
    const res = await t.request('POST', '/organizations', { token: t.superAdmin.token, body: { name: 'ACME' } });
    expect(res.status).toBe(409);
  });

  it('reject an empty name', async () => {
    const res = await t.request('POST', '/organizations', { token: t.superAdmin.token, body: { name: '   ' } });
    expect(res.status).toBe(400);
    expect(res.body.errors).toContainEqual(expect.objectContaining({ field: 'name' }));
  });
});
