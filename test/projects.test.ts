import { and, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditRecords } from '../src/db/schema/audit.js';
import { projects as projectsTable } from '../src/db/schema/projects.js';
import { ProjectPage } from '../src/domains/projects/schemas.js';
import { projectDependencyChecks } from '../src/domains/projects/service.js';
import { createTestApp, PASSWORD, type TestApp } from './support/app.js';
import { chained } from './support/audit.js';

let t: TestApp;
let org: Awaited<ReturnType<TestApp['createOrganization']>>;
let other: Awaited<ReturnType<TestApp['createOrganization']>>;
let dev: Awaited<ReturnType<TestApp['createUser']>>;
let dev2: Awaited<ReturnType<TestApp['createUser']>>;
let tester: Awaited<ReturnType<TestApp['createUser']>>;

beforeAll(async () => {
  t = await createTestApp();
  org = await t.createOrganization('Projects Inc');
  other = await t.createOrganization('Elsewhere');
  dev = await t.createUser(org.admin.token, { role: 'developer' });
  dev2 = await t.createUser(org.admin.token, { role: 'developer' });
  tester = await t.createUser(org.admin.token, { role: 'tester' });
});
afterAll(async () => t?.close());

let n = 0;
const create = async (token: string, body: Record<string, unknown> = {}, headers: Record<string, string> = {}) =>
  t.request('POST', '/projects', { token, body: { name: `Project ${++n} ${Date.now()}`, ...body }, headers });

describe('POST /projects', () => {
  it('creates an active project owned by the creator, audited', async () => {
    const res = await create(dev.token, { description: 'LLM playground', settings: { icon: '🚀', environment: 'staging', tags: [{ name: 'nlp', color: '#00AAFF' }] } });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ organization_id: org.id, owner_id: dev.id, status: 'active', version: 1, settings: { environment: 'staging' } });
    const members = await t.request('GET', `/projects/${res.body.id}/members`, { token: dev.token });
    expect(members.body.items).toEqual([expect.objectContaining({ user_id: dev.id, role: 'owner' })]);
    await chained(t);
    const [audit] = await t.deps.db.select().from(auditRecords).where(and(eq(auditRecords.resourceId, res.body.id), eq(auditRecords.action, 'create')));
    expect(audit!.details).toMatchObject({ after: { name: res.body.name, owner_id: dev.id } });
  });

  it('keeps names unique per organisation among active projects, case-insensitively', async () => {
    const first = await create(dev.token, { name: 'Unique Name' });
    expect(first.status).toBe(201);
    expect((await create(dev2.token, { name: 'UNIQUE name' })).status).toBe(409);
    expect((await create(other.admin.token, { name: 'Unique Name' })).status).toBe(201);
    await t.request('DELETE', `/projects/${first.body.id}`, { token: dev.token });
    expect((await create(dev2.token, { name: 'unique name' })).status).toBe(201);
  });

  it('validates settings as an object, naming the bad field', async () => {
    const color = await create(dev.token, { settings: { tags: [{ name: 'x', color: 'red' }] } });
    expect(color.status).toBe(400);
    expect(color.body.errors).toContainEqual(expect.objectContaining({ field: 'settings.tags.0.color' }));
    const unknown = await create(dev.token, { settings: { anything: { goes: true } } });
    expect(unknown.status).toBe(400);
    expect(unknown.body.errors).toContainEqual(expect.objectContaining({ field: 'settings.anything' }));
    expect((await create(dev.token, { settings: { tags: Array.from({ length: 21 }, (_, i) => ({ name: `t${i}`, color: '#000000' })) } })).status).toBe(400);
  });

  it('needs project:manage (testers cannot create)', async () => {
    expect((await create(tester.token)).status).toBe(403);
  });
});

describe('visibility', () => {
  it('admins list every project of their organisation, others only their own memberships', async () => {
    const mine = await create(dev.token);
    const theirs = await create(dev2.token);
    const adminList = await t.request('GET', '/projects?limit=100', { token: org.admin.token });
    const ids = adminList.body.items.map((p: any) => p.id);
    expect(ids).toEqual(expect.arrayContaining([mine.body.id, theirs.body.id]));
    expect(adminList.body.items.every((p: any) => p.organization_id === org.id)).toBe(true);
    const devList = await t.request('GET', '/projects?limit=100', { token: dev.token });
    const devIds = devList.body.items.map((p: any) => p.id);
    expect(devIds).toContain(mine.body.id);
    expect(devIds).not.toContain(theirs.body.id);
  });

  it('a page serialised by PostgreSQL is the ProjectPage schema, item for item what GET /projects/{id} answers, over REST and tRPC', async () => {
    const owner = await t.createOrganization();
    const awkward = [
      { name: `Quotes "double" 'single' \\ back ${Date.now()}`, description: 'tab\there\nnewline \u0001 control, \u2028 separator, astral 🚀, DEL \u007f' },
      { name: `Ünïcödé ${Date.now()}`, description: '', settings: { icon: '🧪', environment: 'production', tags: [{ name: 'a "tag"', color: '#00AAFF' }] } },
    ];
    for (const body of awkward) expect((await create(owner.admin.token, body)).status).toBe(201);
    const rest = await t.request('GET', '/projects?limit=1', { token: owner.admin.token });
    expect(rest.status).toBe(200);
    expect(ProjectPage.parse(rest.body)).toEqual(rest.body);
    const second = await t.request('GET', `/projects?limit=5&cursor=${rest.body.next_cursor}`, { token: owner.admin.token });
    expect(second.body.next_cursor).toBeNull();
    const items = [...rest.body.items, ...second.body.items];
    expect(items.map((p: any) => p.name)).toEqual([awkward[1]!.name, awkward[0]!.name]);
    for (const item of items) expect(item).toEqual((await t.request('GET', `/projects/${item.id}`, { token: owner.admin.token })).body);
    const input = encodeURIComponent(JSON.stringify({ limit: 1 }));
    const single = await t.request('GET', `/trpc/projects.list?input=${input}`, { token: owner.admin.token });
    const batch = await t.request('GET', `/trpc/projects.list?batch=1&input=${encodeURIComponent(JSON.stringify({ 0: { limit: 1 } }))}`, { token: owner.admin.token });
    expect(single.body).toEqual({ result: { data: rest.body } });
    expect(batch.body[0]).toEqual(single.body);
  });

  it('the stored representation a page is read from follows every change: update, delete, and SQL that bypasses the service', async () => {
    const owner = await t.createOrganization();
    const made = await create(owner.admin.token, { description: 'before' });
    const listed = async (status = 'active') =>
      (await t.request('GET', `/projects?limit=100&status=${status}`, { token: owner.admin.token })).body.items.find((p: any) => p.id === made.body.id);
    const updated = await t.request('PUT', `/projects/${made.body.id}`, {
      token: owner.admin.token,
      body: { name: `Renamed "${Date.now()}"`, settings: { environment: 'production', tags: [{ name: 'ünï', color: '#000000' }] } },
    });
    expect(updated.status).toBe(200);
    expect(await listed()).toEqual(updated.body);
    expect(updated.body).toEqual((await t.request('GET', `/projects/${made.body.id}`, { token: owner.admin.token })).body);

    await t.deps.db.update(projectsTable).set({ description: 'changed \\ by SQL\n', version: 7 }).where(eq(projectsTable.id, made.body.id));
    expect(await listed()).toEqual({ ...updated.body, description: 'changed \\ by SQL\n', version: 7 });

    expect((await t.request('DELETE', `/projects/${made.body.id}`, { token: owner.admin.token })).status).toBe(200);
    const deleted = await listed('deleted');
    expect(deleted).toMatchObject({ id: made.body.id, status: 'deleted', version: 8 });
  });

  it('a project the caller cannot see answers 404: another member’s, another organisation’s', async () => {
    const theirs = await create(dev2.token);
    expect((await t.request('GET', `/projects/${theirs.body.id}`, { token: dev.token })).status).toBe(404);
    expect((await t.request('GET', `/projects/${theirs.body.id}`, { token: other.admin.token })).status).toBe(404);
    expect((await t.request('GET', `/projects/${theirs.body.id}`, { token: org.admin.token })).status).toBe(200);
  });

  it('filters by search and status', async () => {
    const p = await create(dev.token, { name: 'Searchable Zebra' });
    const found = await t.request('GET', '/projects?search=zebra', { token: dev.token });
    expect(found.body.items.map((x: any) => x.id)).toEqual([p.body.id]);
    await t.request('DELETE', `/projects/${p.body.id}`, { token: dev.token });
    const deleted = await t.request('GET', '/projects?status=deleted&search=zebra', { token: org.admin.token });
    expect(deleted.body.items.map((x: any) => x.id)).toEqual([p.body.id]);
  });

  it('pages stay correct while projects are created concurrently: no duplicates, nothing skipped', async () => {
    const pager = await t.createOrganization();
    const before = [];
    for (let i = 0; i < 12; i++) before.push((await create(pager.admin.token)).body.id);
    const seen: string[] = [];
    let cursor: string | null = null;
    let round = 0;
    do {
      const res: any = await t.request('GET', `/projects?limit=5${cursor ? `&cursor=${cursor}` : ''}`, { token: pager.admin.token });
      seen.push(...res.body.items.map((p: any) => p.id));
      cursor = res.body.next_cursor;
      await Promise.all([create(pager.admin.token), create(pager.admin.token)]); // inserted between pages
      round++;
    } while (cursor && round < 20);
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen).toEqual(expect.arrayContaining(before));
  });
});

describe('project roles', () => {
  it('owners and org admins update; editors and viewers cannot', async () => {
    const p = await create(dev.token);
    await t.request('POST', `/projects/${p.body.id}/members`, { token: dev.token, body: { user_id: dev2.id, role: 'editor' } });
    await t.request('POST', `/projects/${p.body.id}/members`, { token: dev.token, body: { user_id: tester.id, role: 'viewer' } });
    expect((await t.request('PUT', `/projects/${p.body.id}`, { token: dev2.token, body: { description: 'x' } })).status).toBe(403);
    expect((await t.request('PUT', `/projects/${p.body.id}`, { token: tester.token, body: { description: 'x' } })).status).toBe(403);
    expect((await t.request('GET', `/projects/${p.body.id}`, { token: tester.token })).status).toBe(200);
    const byOwner = await t.request('PUT', `/projects/${p.body.id}`, { token: dev.token, body: { description: 'by owner' } });
    expect(byOwner.body).toMatchObject({ description: 'by owner', version: 2 });
    const byAdmin = await t.request('PUT', `/projects/${p.body.id}`, { token: org.admin.token, body: { name: `${p.body.name} renamed` } });
    expect(byAdmin.status).toBe(200);
    await chained(t);
    const [audit] = await t.deps.db
      .select()
      .from(auditRecords)
      .where(and(eq(auditRecords.resourceId, p.body.id), eq(auditRecords.action, 'update'), eq(auditRecords.userId, org.admin.id)));
    expect(audit!.details).toEqual({ changes: { name: { old: p.body.name, new: `${p.body.name} renamed` } } });
  });

  it('members: add a user of the organisation only, change roles, remove; never lose the last owner', async () => {
    const p = await create(dev.token);
    const base = `/projects/${p.body.id}/members`;
    expect((await t.request('POST', base, { token: dev.token, body: { user_id: other.admin.id, role: 'viewer' } })).status).toBe(404);
    expect((await t.request('POST', base, { token: dev.token, body: { user_id: dev2.id, role: 'viewer' } })).status).toBe(201);
    expect((await t.request('POST', base, { token: dev.token, body: { user_id: dev2.id, role: 'editor' } })).status).toBe(409);
    expect((await t.request('PUT', `${base}/${dev.id}`, { token: dev.token, body: { role: 'editor' } })).status).toBe(409);
    expect((await t.request('DELETE', `${base}/${dev.id}`, { token: dev.token })).status).toBe(409);
    expect((await t.request('PUT', `${base}/${dev2.id}`, { token: dev.token, body: { role: 'owner' } })).body.role).toBe('owner');
    // With a second owner the creator may step down; owner_id follows.
    expect((await t.request('DELETE', `${base}/${dev.id}`, { token: dev.token })).status).toBe(200);
    const after = await t.request('GET', `/projects/${p.body.id}`, { token: dev2.token });
    expect(after.body.owner_id).toBe(dev2.id);
    expect((await t.request('GET', `/projects/${p.body.id}`, { token: dev.token })).status).toBe(404);
    const roles = await t.request('GET', `/users/${dev2.id}/roles`, { token: org.admin.token });
    expect(roles.body.project_memberships).toContainEqual({ project_id: p.body.id, role: 'owner' });
  });

  it('refuses deactivated users as members', async () => {
    const p = await create(dev.token);
    const gone = await t.createUser(org.admin.token, { role: 'developer' });
    await t.request('DELETE', `/users/${gone.id}`, { token: org.admin.token });
    expect((await t.request('POST', `/projects/${p.body.id}/members`, { token: dev.token, body: { user_id: gone.id, role: 'viewer' } })).status).toBe(409);
  });
});

describe('ETag and If-Match', () => {
  it('GET sends the version as ETag; PUT and DELETE honour If-Match with 412', async () => {
    const p = await create(dev.token);
    const get = await t.request('GET', `/projects/${p.body.id}`, { token: dev.token });
    expect(get.headers.get('etag')).toBe('"1"');
    const notModified = await t.app.request(`/projects/${p.body.id}`, { headers: { authorization: `Bearer ${dev.token}`, 'if-none-match': '"1"' } });
    expect(notModified.status).toBe(304);
    const ok = await t.request('PUT', `/projects/${p.body.id}`, { token: dev.token, body: { description: 'v2' }, headers: { 'if-match': '"1"' } });
    expect(ok.status).toBe(200);
    expect(ok.headers.get('etag')).toBe('"2"');
    const stale = await t.request('PUT', `/projects/${p.body.id}`, { token: dev.token, body: { description: 'lost update' }, headers: { 'if-match': '"1"' } });
    expect(stale.status).toBe(412);
    expect((await t.request('DELETE', `/projects/${p.body.id}`, { token: dev.token, headers: { 'if-match': '"1"' } })).status).toBe(412);
    expect((await t.request('PUT', `/projects/${p.body.id}`, { token: dev.token, body: { description: 'x' }, headers: { 'if-match': 'garbage' } })).status).toBe(412);
    const [row] = await t.deps.db.select().from(projectsTable).where(eq(projectsTable.id, p.body.id));
    expect(row!.description).toBe('v2');
    expect((await t.request('DELETE', `/projects/${p.body.id}`, { token: dev.token, headers: { 'if-match': '"2"' } })).status).toBe(200);
  });
});

describe('DELETE /projects/{id}', () => {
  it('soft-deletes: the row stays, the project disappears from reads', async () => {
    const p = await create(dev.token);
    const del = await t.request('DELETE', `/projects/${p.body.id}`, { token: dev.token });
    expect(del.body.status).toBe('deleted');
    expect((await t.request('GET', `/projects/${p.body.id}`, { token: dev.token })).status).toBe(404);
    const [row] = await t.deps.db.select().from(projectsTable).where(eq(projectsTable.id, p.body.id));
    expect(row!.status).toBe('deleted');
  });

  it('is refused with 409 while something still uses the project', async () => {
    const p = await create(dev.token);
    const check = async (_ctx: unknown, projectId: string) => (projectId === p.body.id ? '2 endpoints are deployed' : null);
    projectDependencyChecks.push(check);
    try {
      const res = await t.request('DELETE', `/projects/${p.body.id}`, { token: dev.token });
      expect(res.status).toBe(409);
      expect(res.body.detail).toMatch(/2 endpoints are deployed/);
    } finally {
      projectDependencyChecks.splice(projectDependencyChecks.indexOf(check), 1);
    }
    expect((await t.request('GET', `/projects/${p.body.id}`, { token: dev.token })).body.status).toBe('active');
  });
});

describe('Idempotency-Key', () => {
  it('replays the first response for the same key and body, refuses a different body', async () => {
    const body = { name: `Idempotent ${Date.now()}` };
    const headers = { 'idempotency-key': `key-${Date.now()}` };
    const first = await t.request('POST', '/projects', { token: dev.token, body, headers });
    const again = await t.request('POST', '/projects', { token: dev.token, body, headers });
    expect(first.status).toBe(201);
    expect(again.status).toBe(201);
    expect(again.body).toEqual(first.body);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    const rows = await t.deps.db.select().from(projectsTable).where(eq(projectsTable.name, body.name));
    expect(rows).toHaveLength(1);
    const different = await t.request('POST', '/projects', { token: dev.token, body: { name: 'Something else' }, headers });
    expect(different.status).toBe(422);
    // Keys belong to one user: another user's identical key is a new request.
    const byOther = await t.request('POST', '/projects', { token: dev2.token, body, headers });
    expect(byOther.status).toBe(409); // the name is taken, which proves it ran
  });

  it('expires keys after 24 hours', async () => {
    const headers = { 'idempotency-key': `exp-${Date.now()}` };
    const first = await t.request('POST', '/projects', { token: dev.token, body: { name: `Exp ${Date.now()}` }, headers });
    t.clock.advance(24 * 3600 + 1);
    try {
      const { access_token } = await t.login(dev.email, PASSWORD); // the old access token expired too
      const later = await t.request('POST', '/projects', { token: access_token, body: { name: `Exp other ${Date.now()}` }, headers });
      expect(later.status).toBe(201);
      expect(later.body.id).not.toBe(first.body.id);
    } finally {
      t.clock.advance(-(24 * 3600 + 1));
    }
  });
});
