import { randomUUID } from 'node:crypto';
import { getTableConfig, type PgTable } from 'drizzle-orm/pg-core';
import { sql } from 'drizzle-orm';
import * as schema from '../../src/db/schema/index.js';
import type { Role } from '../../src/db/schema/users.js';
import type { ProjectRole } from '../../src/db/schema/projects.js';
import { PASSWORD, uniqueEmail, type TestApp } from './app.js';

type Json = Record<string, any>;

export interface Operation {
  method: string;
  path: string;
  op: Json;
  permission: string;
  scope: 'organization' | 'project' | null;
}

export function operationsOf(doc: Json): Operation[] {
  return Object.entries(doc.paths as Json).flatMap(([path, item]) =>
    Object.entries(item as Json).map(([method, op]) => ({
      method: method.toUpperCase(),
      path,
      op,
      permission: op['x-permission'],
      scope: op['x-permission-scope'] ?? null,
    })),
  );
}

export const pathParams = (path: string) => [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!);

export interface SeededUser {
  id: string;
  email: string;
  token: string;
}

export interface SeededOrg {
  id: string;
  admin: SeededUser;
  byRole: Record<Exclude<Role, 'super_admin'>, SeededUser>;
}

/** Access tokens minted by the service's own issuer: as real as a login, without a scrypt per call. */
export async function mintToken(t: TestApp, user: { id: string }, organizationId: string) {
  return (await t.deps.tokens.issue({ sub: user.id, org: organizationId, jti: randomUUID() })).token;
}

export async function seedOrganization(t: TestApp): Promise<SeededOrg> {
  const org = await t.createOrganization();
  const byRole = { admin: { ...org.admin } } as SeededOrg['byRole'];
  for (const role of ['devops', 'developer', 'tester'] as const) {
    const u = await t.createUser(org.admin.token, { role });
    byRole[role] = { id: u.id, email: u.email, token: u.token };
  }
  return { id: org.id, admin: org.admin, byRole };
}

async function newUser(t: TestApp, org: SeededOrg, role: Role = 'tester'): Promise<SeededUser> {
  const email = uniqueEmail(role);
  const res = await t.request('POST', '/users', { token: org.admin.token, body: { email, name: `Fixture ${role}`, role, password: PASSWORD } });
  if (res.status !== 201) throw new Error(`fixture user: ${res.status} ${res.text}`);
  return { id: res.body.id, email, token: await mintToken(t, { id: res.body.id }, org.id) };
}

async function newProject(t: TestApp, org: SeededOrg): Promise<string> {
  const res = await t.request('POST', '/projects', { token: org.admin.token, body: { name: `Fixture ${randomUUID()}` } });
  if (res.status !== 201) throw new Error(`fixture project: ${res.status} ${res.text}`);
  return res.body.id;
}

export async function addToProject(t: TestApp, org: SeededOrg, projectId: string, userId: string, role: ProjectRole) {
  const res = await t.request('POST', `/projects/${projectId}/members`, { token: org.admin.token, body: { user_id: userId, role } });
  if (res.status !== 201) throw new Error(`fixture member: ${res.status} ${res.text}`);
}

/**
 * Fresh resources of one organisation for every path parameter an operation has, keyed by path template
 * prefix. A new resource type adds one entry here; every route under it is then covered by the suite.
 */
export const PATH_FIXTURES: Record<string, (t: TestApp, org: SeededOrg, params: Record<string, string>) => Promise<Record<string, string>>> = {
  '/users/{id}': async (t, org) => ({ id: (await newUser(t, org)).id }),
  '/projects/{id}': async (t, org) => ({ id: await newProject(t, org) }),
  '/projects/{id}/members/{user_id}': async (t, org, params) => {
    const member = await newUser(t, org, 'developer');
    await addToProject(t, org, params.id!, member.id, 'viewer');
    return { user_id: member.id };
  },
  '/credentials/{id}': async (t, org) => {
    const res = await t.request('POST', '/credentials', {
      token: org.admin.token,
      body: { name: `Fixture ${randomUUID()}`, kind: 'openai', values: { api_key: `sk-fixture-${randomUUID()}` } },
    });
    if (res.status !== 201) throw new Error(`fixture credential: ${res.status} ${res.text}`);
    return { id: res.body.id };
  },
  '/audit/{id}': async (t, org) => {
    const res = await t.request('GET', '/audit?limit=1', { token: org.admin.token });
    return { id: res.body.items[0].id };
  },
};

/** Resolves every path parameter of `path` with fresh resources of `org`; returns the concrete path and the ids. */
export async function concretePath(t: TestApp, org: SeededOrg, path: string) {
  const params: Record<string, string> = {};
  const templates = Object.keys(PATH_FIXTURES)
    .filter((prefix) => path === prefix || path.startsWith(`${prefix}/`))
    .sort((a, b) => a.length - b.length);
  for (const prefix of templates) Object.assign(params, await PATH_FIXTURES[prefix]!(t, org, params));
  for (const name of pathParams(path)) if (!params[name]) throw new Error(`no fixture for {${name}} in ${path}: add one to PATH_FIXTURES`);
  return { path: path.replace(/\{(\w+)\}/g, (_, name: string) => params[name]!), params };
}

function resolve(doc: Json, schema: Json): Json {
  return schema?.$ref ? resolve(doc, doc.components.schemas[schema.$ref.split('/').pop()]) : schema;
}

/** A minimal valid value for a JSON schema: required members only, first enum value, unique strings. */
export function sample(doc: Json, raw: Json, name = ''): unknown {
  const schema = resolve(doc, raw);
  if (schema.anyOf) return sample(doc, schema.anyOf[0], name);
  if (schema.enum) return schema.enum[0];
  if (schema.const !== undefined) return schema.const;
  switch (schema.type) {
    case 'object': {
      const out: Json = {};
      for (const key of schema.required ?? []) out[key] = sample(doc, schema.properties[key], key);
      return out;
    }
    case 'array':
      return [];
    case 'integer':
    case 'number':
      return schema.minimum ?? 1;
    case 'boolean':
      return true;
    default:
      if (schema.format === 'email') return uniqueEmail('sample');
      if (schema.format === 'uuid') return randomUUID().replace(/^(.{14})./, '$14');
      return `sample ${name} ${randomUUID().slice(0, 8)}`;
  }
}

export const requestBodySchema = (doc: Json, op: Json): Json | undefined => {
  const raw = op.requestBody?.content?.['application/json']?.schema;
  return raw ? resolve(doc, raw) : undefined;
};

/** Every row of every table, as text: equal snapshots mean nothing changed. */
export async function snapshotDatabase(t: TestApp): Promise<string> {
  const tables = (Object.values(schema) as unknown[]).filter(
    (v): v is PgTable => typeof v === 'object' && v !== null && Symbol.for('drizzle:IsDrizzleTable') in v,
  );
  // Records left pending by earlier requests would otherwise be chained between two snapshots.
  await t.deps.auditChainer.chainAll();
  const parts: string[] = [];
  for (const table of tables) {
    const { name } = getTableConfig(table);
    const rows = await t.deps.db.execute(sql.raw(`select to_jsonb(x)::text as row from "${name}" x order by 1`));
    const list = (Array.isArray(rows) ? rows : (rows as { rows: unknown[] }).rows) as { row: string }[];
    parts.push(`${name}:${list.map((r) => r.row).join('\n')}`);
  }
  return parts.join('\n\n');
}
