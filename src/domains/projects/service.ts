import { and, asc, eq, gt, ne, sql } from 'drizzle-orm';
import { projectMembers, projects, type ProjectRow } from '../../db/schema/projects.js';
import { users } from '../../db/schema/users.js';
import { AppError, conflict, notFound } from '../../lib/errors.js';
import { decodeCursor, encodeCursor, toJsonTextPage } from '../../lib/pagination.js';
import type { JsonText } from '../../lib/json-text.js';
import { isOrganizationAdmin } from '../../lib/permissions.js';
import { appendAudit } from '../audit/chain.js';
import { inTransaction, type ActorCtx } from '../service-ctx.js';
import { likePattern } from '../../lib/sql.js';
import type { ProjectAccess } from './access.js';
import {
  toMemberDto,
  toProjectDto,
  type AddMemberInput,
  type ProjectPage,
  type CreateProjectInput,
  type ListMembersInput,
  type ListProjectsInput,
  type UpdateProjectInput,
} from './schemas.js';

/**
 * What still uses a project and so blocks its deletion. Each later domain (endpoints, credentials, …) adds
 * one check here; deletion answers 409 naming every blocker.
 */
export type ProjectDependencyCheck = (ctx: ActorCtx, projectId: string) => Promise<string | null>;
export const projectDependencyChecks: ProjectDependencyCheck[] = [];

const projectSnapshot = (p: ProjectRow) => ({ name: p.name, description: p.description, settings: p.settings, owner_id: p.ownerId, status: p.status });

/** The first page has no cursor; comparing with the greatest UUID keeps one statement text for every page. */
const AFTER_EVERY_ID = 'ffffffff-ffff-ffff-ffff-ffffffffffff';

/**
 * Organisation admins list every project of their organisation; everyone else the projects they are a member
 * of. Each item is the project's stored API representation (`projects.dto_json`, kept by a trigger): the page
 * goes out as that text, never decoded into objects (JsonText). Both are keyset pages on id (UUIDv7, newest
 * first) read from an index: (organization_id, status, id) for admins; for members (user_id, project_id), then
 * each project by its id. The member page looks each project up in a LATERAL subquery fenced with OFFSET 0 so
 * that the plan cannot become a merge join walking every project of the organisation: the read pool runs a
 * statement's generic plan, and for a plain join that plan was the merge join (test/projects-plan.test.ts
 * checks both plans, generic ones included).
 */
const PROJECT_PAGE_SQL = {
  admin: `select p.dto_json as json, p.id
from projects p
where p.organization_id = $1 and p.status = $2 and p.id < $3 and ($5::text is null or p.name ilike $5)
order by p.id desc
limit $4`,
  member: `select p.dto_json as json, p.id
from project_members m
cross join lateral (
  select p.id, p.dto_json from projects p
  where p.id = m.project_id and p.organization_id = $1 and p.status = $2 and ($5::text is null or p.name ilike $5)
  offset 0
) p
where m.user_id = $6 and m.project_id < $3
order by m.project_id desc
limit $4`,
} as const;

/** The statement and parameters of one page of GET /projects for the caller. */
export function projectPageQuery(ctx: ActorCtx, input: ListProjectsInput): { text: string; params: unknown[] } {
  const params: unknown[] = [
    ctx.actor.organizationId,
    input.status,
    decodeCursor(input.cursor) ?? AFTER_EVERY_ID,
    input.limit + 1,
    input.search === undefined ? null : likePattern(input.search),
  ];
  if (isOrganizationAdmin(ctx.actor.role)) return { text: PROJECT_PAGE_SQL.admin, params };
  return { text: PROJECT_PAGE_SQL.member, params: [...params, ctx.actor.userId] };
}

export async function listProjects(ctx: ActorCtx, input: ListProjectsInput): Promise<JsonText<ProjectPage>> {
  const { text, params } = projectPageQuery(ctx, input);
  // A search filters with ILIKE and may scan many projects for a page: the main pool (Database.query).
  const rows = await ctx.deps.database.query<{ json: string; id: string }>(text, params, { long: input.search !== undefined });
  return toJsonTextPage<ProjectPage>(rows, input.limit);
}

export async function createProject(ctx: ActorCtx, input: CreateProjectInput) {
  return inTransaction(ctx, async (tx) => {
    await assertNameFree(tx, ctx.actor.organizationId, input.name);
    const now = ctx.clock.now();
    const [row] = await tx.db
      .insert(projects)
      .values({
        id: ctx.ids.uuid(),
        name: input.name,
        description: input.description,
        settings: input.settings,
        organizationId: ctx.actor.organizationId,
        ownerId: ctx.actor.userId,
        createdAt: now,
        updatedAt: now,
      })
      .returning();
    await tx.db.insert(projectMembers).values({ projectId: row!.id, userId: ctx.actor.userId, role: 'owner', createdAt: now, updatedAt: now });
    await appendAudit(tx, { action: 'create', resourceType: 'project', resourceId: row!.id, organizationId: row!.organizationId, details: { after: projectSnapshot(row!) } });
    return toProjectDto(row!);
  });
}

async function assertNameFree(ctx: ActorCtx, organizationId: string, name: string, exceptId?: string) {
  const [clash] = await ctx.db
    .select({ id: projects.id })
    .from(projects)
    .where(
      and(
        eq(projects.organizationId, organizationId),
        eq(projects.status, 'active'),
        sql`lower(${projects.name}) = lower(${name})`,
        exceptId ? ne(projects.id, exceptId) : undefined,
      ),
    );
  if (clash) throw conflict('A project with this name already exists in the organisation');
}

/** Locks the project row and checks the version the client last saw (If-Match / expected_version). */
async function lockForWrite(ctx: ActorCtx, projectId: string, expectedVersion: number | undefined): Promise<ProjectRow> {
  const [row] = await ctx.db.select().from(projects).where(eq(projects.id, projectId)).for('update');
  if (!row || row.status !== 'active') throw notFound('project');
  if (expectedVersion !== undefined && expectedVersion !== row.version) {
    throw new AppError('PRECONDITION_FAILED', `The project changed since you read it (now at version ${row.version})`);
  }
  return row;
}

export async function updateProject(ctx: ActorCtx, access: ProjectAccess, input: UpdateProjectInput) {
  return inTransaction(ctx, async (tx) => {
    const current = await lockForWrite(tx, access.project.id, input.expected_version);
    const patch: Partial<ProjectRow> = {};
    if (input.name !== undefined && input.name !== current.name) {
      await assertNameFree(tx, current.organizationId, input.name, current.id);
      patch.name = input.name;
    }
    if (input.description !== undefined && input.description !== current.description) patch.description = input.description;
    if (input.settings !== undefined && JSON.stringify(input.settings) !== JSON.stringify(current.settings)) patch.settings = input.settings;
    if (Object.keys(patch).length === 0) return toProjectDto(current);
    const [row] = await tx.db
      .update(projects)
      .set({ ...patch, version: current.version + 1, updatedAt: ctx.clock.now() })
      .where(eq(projects.id, current.id))
      .returning();
    const changes = Object.fromEntries(
      (Object.keys(patch) as (keyof ProjectRow)[]).map((k) => [k, { old: current[k] as never, new: row![k] as never }]),
    );
    await appendAudit(tx, { action: 'update', resourceType: 'project', resourceId: current.id, organizationId: current.organizationId, details: { changes } });
    return toProjectDto(row!);
  });
}

export async function deleteProject(ctx: ActorCtx, access: ProjectAccess, expectedVersion: number | undefined) {
  return inTransaction(ctx, async (tx) => {
    const current = await lockForWrite(tx, access.project.id, expectedVersion);
    const blockers = (await Promise.all(projectDependencyChecks.map((check) => check(tx, current.id)))).filter((b): b is string => b !== null);
    if (blockers.length > 0) throw conflict(`The project is still in use: ${blockers.join('; ')}`);
    const now = ctx.clock.now();
    const [row] = await tx.db
      .update(projects)
      .set({ status: 'deleted', deletedAt: now, updatedAt: now, version: current.version + 1 })
      .where(eq(projects.id, current.id))
      .returning();
    await appendAudit(tx, { action: 'delete', resourceType: 'project', resourceId: current.id, organizationId: current.organizationId, details: { before: projectSnapshot(current) } });
    return toProjectDto(row!);
  });
}

export async function listMembers(ctx: ActorCtx, access: ProjectAccess, input: ListMembersInput) {
  const after = decodeCursor(input.cursor);
  const rows = await ctx.db
    .select({ member: projectMembers, email: users.email, name: users.name })
    .from(projectMembers)
    .innerJoin(users, eq(users.id, projectMembers.userId))
    .where(
      and(
        eq(projectMembers.projectId, access.project.id),
        input.role ? eq(projectMembers.role, input.role) : undefined,
        after ? gt(projectMembers.userId, after) : undefined,
      ),
    )
    .orderBy(asc(projectMembers.userId))
    .limit(input.limit + 1);
  const hasMore = rows.length > input.limit;
  const page = rows.slice(0, input.limit);
  return {
    items: page.map((r) => toMemberDto(r.member, r)),
    next_cursor: hasMore ? encodeCursor(page.at(-1)!.member.userId) : null,
  };
}

/** A user of the project's organisation who can hold a role (not deactivated); 404 otherwise. */
async function memberCandidate(ctx: ActorCtx, project: ProjectRow, userId: string) {
  const [user] = await ctx.db.select().from(users).where(and(eq(users.id, userId), eq(users.organizationId, project.organizationId)));
  if (!user) throw notFound('user');
  if (user.status === 'deactivated') throw conflict('A deactivated user cannot be added to a project');
  return user;
}

export async function addMember(ctx: ActorCtx, access: ProjectAccess, input: AddMemberInput) {
  return inTransaction(ctx, async (tx) => {
    const project = await lockForWrite(tx, access.project.id, undefined);
    const user = await memberCandidate(tx, project, input.user_id);
    const [existing] = await tx.db
      .select()
      .from(projectMembers)
      .where(and(eq(projectMembers.projectId, project.id), eq(projectMembers.userId, user.id)));
    if (existing) throw conflict('The user is already a member of this project');
    const now = ctx.clock.now();
    const [member] = await tx.db.insert(projectMembers).values({ projectId: project.id, userId: user.id, role: input.role, createdAt: now, updatedAt: now }).returning();
    await appendAudit(tx, {
      action: 'create',
      resourceType: 'project_member',
      resourceId: `${project.id}/${user.id}`,
      organizationId: project.organizationId,
      details: { after: { project_id: project.id, user_id: user.id, role: input.role } },
    });
    return toMemberDto(member!, user);
  });
}

async function findMember(ctx: ActorCtx, projectId: string, userId: string) {
  const [row] = await ctx.db
    .select({ member: projectMembers, email: users.email, name: users.name })
    .from(projectMembers)
    .innerJoin(users, eq(users.id, projectMembers.userId))
    .where(and(eq(projectMembers.projectId, projectId), eq(projectMembers.userId, userId)));
  if (!row) throw notFound('project member');
  return row;
}

/** Refuses to leave a project without an owner; moves owner_id when its holder stops being an owner. */
async function keepAnOwner(ctx: ActorCtx, project: ProjectRow, losingUserId: string) {
  const others = await ctx.db
    .select({ userId: projectMembers.userId })
    .from(projectMembers)
    .where(and(eq(projectMembers.projectId, project.id), eq(projectMembers.role, 'owner'), ne(projectMembers.userId, losingUserId)))
    .orderBy(asc(projectMembers.createdAt), asc(projectMembers.userId));
  if (others.length === 0) throw conflict('This is the last owner of the project; make another member owner first');
  if (project.ownerId === losingUserId) {
    await ctx.db.update(projects).set({ ownerId: others[0]!.userId, version: project.version + 1, updatedAt: ctx.clock.now() }).where(eq(projects.id, project.id));
  }
}

export async function updateMember(ctx: ActorCtx, access: ProjectAccess, input: AddMemberInput) {
  return inTransaction(ctx, async (tx) => {
    const project = await lockForWrite(tx, access.project.id, undefined);
    const current = await findMember(tx, project.id, input.user_id);
    if (current.member.role === input.role) return toMemberDto(current.member, current);
    if (current.member.role === 'owner') await keepAnOwner(tx, project, input.user_id);
    const [member] = await tx.db
      .update(projectMembers)
      .set({ role: input.role, updatedAt: ctx.clock.now() })
      .where(and(eq(projectMembers.projectId, project.id), eq(projectMembers.userId, input.user_id)))
      .returning();
    await appendAudit(tx, {
      action: 'update',
      resourceType: 'project_member',
      resourceId: `${project.id}/${input.user_id}`,
      organizationId: project.organizationId,
      details: { changes: { role: { old: current.member.role, new: input.role } } },
    });
    return toMemberDto(member!, current);
  });
}

export async function removeMember(ctx: ActorCtx, access: ProjectAccess, userId: string) {
  return inTransaction(ctx, async (tx) => {
    const project = await lockForWrite(tx, access.project.id, undefined);
    const current = await findMember(tx, project.id, userId);
    if (current.member.role === 'owner') await keepAnOwner(tx, project, userId);
    await tx.db.delete(projectMembers).where(and(eq(projectMembers.projectId, project.id), eq(projectMembers.userId, userId)));
    await appendAudit(tx, {
      action: 'delete',
      resourceType: 'project_member',
      resourceId: `${project.id}/${userId}`,
      organizationId: project.organizationId,
      details: { before: { project_id: project.id, user_id: userId, role: current.member.role } },
    });
    return toMemberDto(current.member, current);
  });
}

/** Memberships in active projects, for GET /users/{id}/roles. */
export async function membershipsOf(ctx: ActorCtx, userId: string) {
  return ctx.db
    .select({ project_id: projectMembers.projectId, role: projectMembers.role })
    .from(projectMembers)
    .innerJoin(projects, eq(projects.id, projectMembers.projectId))
    .where(and(eq(projectMembers.userId, userId), eq(projects.status, 'active')))
    .orderBy(asc(projectMembers.projectId));
}
