import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { projectMembers, projects } from '../src/db/schema/projects.js';
import { projectListQuery } from '../src/domains/projects/service.js';
import type { ActorCtx } from '../src/domains/service-ctx.js';
import { createTestApp, type TestApp } from './support/app.js';

/**
 * GET /projects must read an index however large the organisation: 10,000 projects, a member of 50 of them.
 * The plans are checked with EXPLAIN on the real query the service runs (on PostgreSQL 15 with
 * TEST_DATABASE_URL, and on PGlite's PostgreSQL 18 otherwise).
 */
let t: TestApp;
let org: Awaited<ReturnType<TestApp['createOrganization']>>;
let member: Awaited<ReturnType<TestApp['createUser']>>;

beforeAll(async () => {
  t = await createTestApp();
  org = await t.createOrganization('Ten thousand projects');
  member = await t.createUser(org.admin.token, { role: 'developer' });
  const now = new Date();
  for (let batch = 0; batch < 10; batch++) {
    const rows = Array.from({ length: 1000 }, (_, i) => ({
      id: t.deps.ids.uuid(),
      name: `Project ${batch * 1000 + i}`,
      organizationId: org.id,
      ownerId: org.admin.id,
      createdAt: now,
      updatedAt: now,
    }));
    await t.deps.db.insert(projects).values(rows);
    await t.deps.db.insert(projectMembers).values(rows.map((r) => ({ projectId: r.id, userId: org.admin.id, role: 'owner' as const, createdAt: now, updatedAt: now })));
    if (batch % 2 === 0) {
      await t.deps.db
        .insert(projectMembers)
        .values(rows.slice(0, 10).map((r) => ({ projectId: r.id, userId: member.id, role: 'viewer' as const, createdAt: now, updatedAt: now })));
    }
  }
  await t.deps.db.execute(sql`analyze projects`);
  await t.deps.db.execute(sql`analyze project_members`);
}, 120_000);
afterAll(async () => t?.close());

const ctxFor = (userId: string, role: 'admin' | 'developer'): ActorCtx =>
  ({ db: t.deps.db, deps: t.deps, actor: { userId, organizationId: org.id, role, jti: 'x', exp: 0 } }) as unknown as ActorCtx;

async function planOf(query: ReturnType<typeof projectListQuery>): Promise<any> {
  const result = await t.deps.db.execute(sql`explain (format json) ${query}`);
  const rows = (Array.isArray(result) ? result : (result as { rows: any[] }).rows) as any[];
  const plan = rows[0]['QUERY PLAN'];
  return (typeof plan === 'string' ? JSON.parse(plan) : plan)[0].Plan;
}

function scans(node: any, out: { type: string; relation?: string; index?: string }[] = []) {
  if (node['Relation Name']) out.push({ type: node['Node Type'], relation: node['Relation Name'], index: node['Index Name'] });
  for (const child of node.Plans ?? []) scans(child, out);
  return out;
}

describe('GET /projects query plans', () => {
  it('a member’s page reads the (user_id, project_id) index and the projects primary key, no sequential scan', async () => {
    const found = scans(await planOf(projectListQuery(ctxFor(member.id, 'developer'), { limit: 20, status: 'active' })));
    expect(found.filter((s) => s.type === 'Seq Scan'), JSON.stringify(found)).toEqual([]);
    expect(found.map((s) => s.index)).toContain('project_members_user_project_idx');
    const page = await projectListQuery(ctxFor(member.id, 'developer'), { limit: 20, status: 'active' });
    expect(page).toHaveLength(21);
  });

  it('an admin’s page reads projects through an index (the planner picks the primary key or (organization_id, status, id)), no sequential scan', async () => {
    const found = scans(await planOf(projectListQuery(ctxFor(org.admin.id, 'admin'), { limit: 20, status: 'active' })));
    expect(found.filter((s) => s.type === 'Seq Scan'), JSON.stringify(found)).toEqual([]);
    expect(found.filter((s) => s.relation === 'projects').every((s) => ['projects_pkey', 'projects_org_status_id_idx'].includes(s.index!)), JSON.stringify(found)).toBe(true);
  });

  it('later pages (with a cursor) keep the same plans', async () => {
    const first = await t.request('GET', '/projects?limit=20', { token: member.token });
    expect(first.body.items).toHaveLength(20);
    const cursor = first.body.next_cursor as string;
    const found = scans(await planOf(projectListQuery(ctxFor(member.id, 'developer'), { limit: 20, status: 'active', cursor })));
    expect(found.filter((s) => s.type === 'Seq Scan')).toEqual([]);
    const second = await t.request('GET', `/projects?limit=20&cursor=${cursor}`, { token: member.token });
    const third = await t.request('GET', `/projects?limit=20&cursor=${second.body.next_cursor}`, { token: member.token });
    expect([first, second, third].map((p) => p.body.items.length)).toEqual([20, 20, 10]);
    expect(third.body.next_cursor).toBeNull();
  });
});
