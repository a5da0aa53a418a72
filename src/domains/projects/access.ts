import { and, eq } from 'drizzle-orm';
import { projectMembers, projects, type ProjectRole, type ProjectRow } from '../../db/schema/projects.js';
import { notFound } from '../../lib/errors.js';
import { isOrganizationAdmin, projectRoleHas, type ProjectPermission } from '../../lib/permissions.js';
import type { ActorCtx } from '../service-ctx.js';

export interface ProjectAccess {
  project: ProjectRow;
  /** The caller's project role, or 'org_admin' for organisation admins who are not members. */
  role: ProjectRole | 'org_admin';
}

/**
 * The caller's access to a project. A project the caller cannot see at all — another organisation's, a
 * deleted one, or one they are not a member of without being an organisation admin — answers 404, so its
 * existence does not leak.
 */
export async function resolveProjectAccess(ctx: ActorCtx, projectId: string): Promise<ProjectAccess> {
  const [row] = await ctx.db
    .select({ project: projects, role: projectMembers.role })
    .from(projects)
    .leftJoin(projectMembers, and(eq(projectMembers.projectId, projects.id), eq(projectMembers.userId, ctx.actor.userId)))
    .where(eq(projects.id, projectId));
  const visibleOrg = row && (ctx.actor.role === 'super_admin' || row.project.organizationId === ctx.actor.organizationId);
  if (!row || !visibleOrg || row.project.status !== 'active') throw notFound('project');
  if (row.role) return { project: row.project, role: row.role };
  if (isOrganizationAdmin(ctx.actor.role)) return { project: row.project, role: 'org_admin' };
  throw notFound('project');
}

export const accessAllows = (access: ProjectAccess, permission: ProjectPermission) =>
  access.role === 'org_admin' || projectRoleHas(access.role, permission);
