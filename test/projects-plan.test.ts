import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { projectMembers, projects } from '../src/db/schema/projects.js';
import { projectPageQuery } from '../src/domains/projects/service.js';
import type { ListProjectsInput } from '../src/domains/projects/schemas.js';
import type { ActorCtx } from '../src/domains/service-ctx.js';
import { createTestApp, type TestApp } from './support/app.js';
import { rowsOf } from '../src/db/client.js';

/**
 * GET /projects must read an index however large the organisation: 10,000 projects, a member of 50 of them.
 * The plans are checked with EXPLAIN on the real statement the service runs (on PostgreSQL 15 with
 * TEST_DATABASE_URL, and on PGlite's PostgreSQL 18 otherwise): the custom plan PostgreSQL makes for one set
 * of values, and the generic plan it caches for a prepared statement after five runs.
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

type PageQuery = ReturnType<typeof projectPageQuery>;
const pageOf = (userId: string, role: 'admin' | 'developer', input: Partial<ListProjectsInput> = {}) =>
  projectPageQuery(ctxFor(userId, role), { limit: 20, status: 'active', ...input });

const firstPlan = (rows: any[]) => {
  const plan = rows[0]['QUERY PLAN'];
  return (typeof plan === 'string' ? JSON.parse(plan) : plan)[0].Plan;
};

/** The plan for these values. */
async function planOf({ text, params }: PageQuery): Promise<any> {
  return firstPlan(await t.deps.database.query<any>(`explain (format json) ${text}`, params));
}

const literal = (v: unknown) => (v === null ? 'null' : typeof v === 'number' ? String(v) : `'${String(v).replace(/'/g, "''")}'`);
let statementCount = 0;

/** The generic plan of the prepared statement, the one PostgreSQL may cache and reuse for any values. */
async function genericPlanOf({ text, params }: PageQuery): Promise<any> {
  const name = `page_plan_${++statementCount}`;
  return t.deps.db.transaction(async (tx) => {
    await tx.execute(sql.raw(`prepare ${name} as ${text}`));
    await tx.execute(sql.raw('set local plan_cache_mode = force_generic_plan'));
    const plan = firstPlan(rowsOf(await tx.execute(sql.raw(`explain (format json) execute ${name}(${params.map(literal).join(', ')})`))));
    await tx.execute(sql.raw(`deallocate ${name}`));
    return plan;
  });
}

function nodeTypes(node: any, out: string[] = []) {
  out.push(node['Node Type']);
  for (const child of node.Plans ?? []) nodeTypes(child, out);
  return out;
}

function scans(node: any, out: { type: string; relation?: string; index?: string; cond?: string }[] = []) {
  if (node['Relation Name']) out.push({ type: node['Node Type'], relation: node['Relation Name'], index: node['Index Name'], cond: node['Index Cond'] });
  for (const child of node.Plans ?? []) scans(child, out);
  return out;
}

describe('GET /projects query plans', () => {
  it('a member’s page reads the (user_id, project_id) index and the projects primary key, no sequential scan', async () => {
    const found = scans(await planOf(pageOf(member.id, 'developer')));
    expect(found.filter((s) => s.type === 'Seq Scan'), JSON.stringify(found)).toEqual([]);
    expect(found.map((s) => s.index)).toContain('project_members_user_project_idx');
    const { text, params } = pageOf(member.id, 'developer');
    expect(await t.deps.database.query(text, params)).toHaveLength(21);
  });

  it('the generic plan of a member’s page looks each project up by its id: no merge join over the organisation', async () => {
    for (const input of [{}, { search: 'Project 9' }]) {
      const plan = await genericPlanOf(pageOf(member.id, 'developer', input));
      const found = scans(plan);
      expect(found.filter((s) => s.type === 'Seq Scan'), JSON.stringify(found)).toEqual([]);
      expect(found.find((s) => s.relation === 'project_members')?.index, JSON.stringify(found)).toBe('project_members_user_project_idx');
      // One index lookup per membership (the primary key, or (organization_id, status, id) with all three).
      const projectScans = found.filter((s) => s.relation === 'projects');
      expect(projectScans, JSON.stringify(found)).toHaveLength(1);
      expect(projectScans[0]!.cond, JSON.stringify(found)).toMatch(/\bid = m\.project_id\b/);
      expect(nodeTypes(plan), JSON.stringify(found)).toContain('Nested Loop');
      expect(nodeTypes(plan)).not.toContain('Merge Join');
    }
  });

  it('an admin’s page reads projects through an index (the planner picks the primary key or (organization_id, status, id)), no sequential scan', async () => {
    for (const plan of [await planOf(pageOf(org.admin.id, 'admin')), await genericPlanOf(pageOf(org.admin.id, 'admin'))]) {
      const found = scans(plan);
      expect(found.filter((s) => s.type === 'Seq Scan'), JSON.stringify(found)).toEqual([]);
      expect(found.filter((s) => s.relation === 'projects').every((s) => ['projects_pkey', 'projects_org_status_id_idx'].includes(s.index!)), JSON.stringify(found)).toBe(true);
    }
  });

  it('later pages (with a cursor) keep the same plans', async () => {
    const first = await t.request('GET', '/projects?limit=20', { token: member.token });
    expect(first.body.items).toHaveLength(20);
    const cursor = first.body.next_cursor as string;
    const found = scans(await planOf(pageOf(member.id, 'developer', { cursor })));
    expect(found.filter((s) => s.type === 'Seq Scan')).toEqual([]);
    const second = await t.request('GET', `/projects?limit=20&cursor=${cursor}`, { token: member.token });
    const third = await t.request('GET', `/projects?limit=20&cursor=${second.body.next_cursor}`, { token: member.token });
    expect([first, second, third].map((p) => p.body.items.length)).toEqual([20, 20, 10]);
    expect(third.body.next_cursor).toBeNull();
  });

  it('list items are the same DTOs GET /projects/{id} answers, timestamps included', async () => {
    const page = await t.request('GET', '/projects?limit=3', { token: member.token });
    for (const item of page.body.items) {
      const one = await t.request('GET', `/projects/${item.id}`, { token: member.token });
      expect(item).toEqual(one.body);
    }
  });
});
