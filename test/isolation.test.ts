import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROLES } from '../src/db/schema/users.js';
import { PERMISSIONS, PROJECT_PERMISSIONS, projectRoleHas, roleHas, type Permission, type ProjectPermission } from '../src/lib/permissions.js';
import { createTestApp, type TestApp } from './support/app.js';
import {
  addToProject,
  concretePath,
  mintToken,
  operationsOf,
  pathParams,
  requestBodySchema,
  sample,
  seedOrganization,
  snapshotDatabase,
  type Operation,
  type SeededOrg,
} from './support/isolation.js';

/**
 * Tenant isolation and authorisation, derived from /openapi.json: every operation is exercised for every
 * role, across organisations and with forged bodies. A new route is covered as soon as it is in the
 * document (and its path parameters have an entry in PATH_FIXTURES).
 */
let t: TestApp;
let doc: any;
let ops: Operation[];
let A: SeededOrg;
let B: SeededOrg;

beforeAll(async () => {
  t = await createTestApp();
  doc = (await t.request('GET', '/openapi.json')).body;
  ops = operationsOf(doc);
  A = await seedOrganization(t);
  B = await seedOrganization(t);
}, 120_000);
afterAll(async () => t?.close());

const label = (o: Operation) => `${o.method} ${o.path}`;

async function call(o: Operation, path: string, token: string, body?: unknown) {
  const schema = requestBodySchema(doc, o.op);
  return t.request(o.method, path, { token, body: body ?? (schema ? sample(doc, schema) : undefined) });
}

describe('the permission of every operation is declared', () => {
  it('each operation names public, authenticated or a permission of the matrix, with its scope', () => {
    expect(ops.length).toBeGreaterThan(20);
    for (const o of ops) {
      expect(['public', 'authenticated', 'internal', ...PERMISSIONS], label(o)).toContain(o.permission);
      if (PERMISSIONS.includes(o.permission as Permission)) expect(['organization', 'project'], label(o)).toContain(o.scope);
      if (o.scope === 'project') expect(PROJECT_PERMISSIONS, label(o)).toContain(o.permission);
    }
  });
});

describe('cross-tenant access answers 404 and changes nothing', () => {
  it('organisation B’s admin using organisation A’s ids, on every operation with an id in its path', async () => {
    // Internal routes answer to the service token, not to users of any organisation.
    const withIds = ops.filter((o) => pathParams(o.path).length > 0 && o.permission !== 'public' && o.permission !== 'internal');
    expect(withIds.length).toBeGreaterThan(8);
    const targets = [];
    for (const o of withIds) targets.push({ o, ...(await concretePath(t, A, o.path)) });
    const token = await mintToken(t, B.admin, B.id);
    const before = await snapshotDatabase(t);
    for (const { o, path } of targets) {
      const res = await call(o, path, token);
      expect(res.status, `${label(o)} → ${res.text}`).toBe(404);
    }
    expect(await snapshotDatabase(t)).toBe(before);
  }, 120_000);
});

describe('role × operation (organisation scope)', () => {
  const orgOps = () => ops.filter((o) => o.permission !== 'public' && o.permission !== 'internal' && o.scope !== 'project');

  for (const role of ['admin', 'devops', 'developer', 'tester'] as const) {
    it(`${role}: exactly the operations its permissions allow`, async () => {
      for (const o of orgOps()) {
        const actor = A.byRole[role];
        const { path } = await concretePath(t, A, o.path);
        const res = await call(o, path, await mintToken(t, actor, A.id));
        const allowed = o.permission === 'authenticated' || roleHas(role, o.permission as Permission);
        if (allowed) expect([401, 403], `${role} ${label(o)} → ${res.status} ${res.text}`).not.toContain(res.status);
        else expect(res.status, `${role} ${label(o)} → ${res.text}`).toBe(403);
      }
    }, 120_000);
  }

  it('super admin: every operation', async () => {
    for (const o of orgOps()) {
      const { path } = await concretePath(t, A, o.path);
      const res = await call(o, path, await mintToken(t, { id: t.superAdmin.id }, t.superAdmin.organizationId));
      expect([401, 403], `${label(o)} → ${res.status} ${res.text}`).not.toContain(res.status);
    }
  }, 120_000);

  it('covers every role of the organisation matrix', () => {
    expect([...ROLES].sort()).toEqual(['admin', 'developer', 'devops', 'super_admin', 'tester']);
  });
});

/** Refused by authorisation: 401, 403, or the project itself invisible (other 404s are business answers). */
const refusal = (res: { status: number; body: any }) => res.status === 401 || res.status === 403 || (res.status === 404 && res.body?.detail === 'project not found');

describe('role × operation (project scope)', () => {
  const projectOps = () => ops.filter((o) => o.scope === 'project');

  for (const projectRole of ['owner', 'editor', 'viewer'] as const) {
    it(`project ${projectRole}: exactly the operations the project role allows`, async () => {
      expect(projectOps().length).toBeGreaterThan(5);
      for (const o of projectOps()) {
        const { path, params } = await concretePath(t, A, o.path);
        // A developer of the organisation, holding this role in the project only.
        const actor = A.byRole.developer;
        await addToProject(t, A, params.id!, actor.id, projectRole);
        const res = await call(o, path, await mintToken(t, actor, A.id));
        const allowed = projectRoleHas(projectRole, o.permission as ProjectPermission);
        if (allowed) expect(refusal(res), `${projectRole} ${label(o)} → ${res.status} ${res.text}`).toBe(false);
        else expect(res.status, `${projectRole} ${label(o)} → ${res.text}`).toBe(403);
      }
    }, 120_000);
  }

  it('organisation admins who are not members: every project operation', async () => {
    for (const o of projectOps()) {
      const { path } = await concretePath(t, A, o.path);
      const res = await call(o, path, await mintToken(t, A.admin, A.id));
      expect(refusal(res), `${label(o)} → ${res.status} ${res.text}`).toBe(false);
    }
  }, 120_000);

  it('members of the organisation who are not project members: 404, the project is invisible', async () => {
    for (const o of projectOps()) {
      const { path } = await concretePath(t, A, o.path);
      const res = await call(o, path, await mintToken(t, A.byRole.tester, A.id));
      expect(res.status, `${label(o)} → ${res.text}`).toBe(404);
    }
  }, 120_000);
});

describe('mass assignment', () => {
  const FORGED: Record<string, () => unknown> = {
    organization_id: () => B.id,
    owner_id: () => B.admin.id,
    role: () => 'super_admin',
    id: () => '01a2198b-0000-7000-8000-000000000001',
    created_at: () => '2000-01-01T00:00:00.000Z',
    updated_at: () => '2000-01-01T00:00:00.000Z',
    status: () => 'active',
    version: () => 99,
    is_superuser: () => true,
  };

  it('write bodies carrying fields the operation does not accept are rejected with 400 naming them', async () => {
    const writes = ops.filter((o) => (o.method === 'POST' || o.method === 'PUT') && requestBodySchema(doc, o.op) && o.permission !== 'public' && o.permission !== 'internal');
    expect(writes.length).toBeGreaterThan(5);
    let checked = 0;
    for (const o of writes) {
      const schema = requestBodySchema(doc, o.op)!;
      for (const [field, value] of Object.entries(FORGED)) {
        if (field in (schema.properties ?? {})) continue; // an accepted field has its own rules, tested per domain
        const { path } = await concretePath(t, A, o.path);
        const body = { ...(sample(doc, schema) as object), [field]: value() };
        // The super admin may call every operation, so the refusal can only come from the body.
        const res = await call(o, path, await mintToken(t, { id: t.superAdmin.id }, t.superAdmin.organizationId), body);
        expect(res.status, `${label(o)} with ${field} → ${res.text}`).toBe(400);
        expect(res.body.errors.map((e: any) => e.field), `${label(o)} with ${field}`).toContain(field);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(30);
  }, 180_000);
});
