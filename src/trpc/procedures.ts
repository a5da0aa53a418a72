import { badField, forbidden } from '../lib/errors.js';
import { isAdminPermission, roleHas, type Permission, type ProjectPermission } from '../lib/permissions.js';
import { accessAllows, resolveProjectAccess } from '../domains/projects/access.js';
import { serviceCtxFor, type ActorCtx } from '../domains/service-ctx.js';
import { recordAudit } from '../domains/audit/chain.js';
import type { RequestContext } from './context.js';
import { t } from './init.js';

/*
 * Each procedure kind is one middleware: every extra .use() costs a context copy per request, and the
 * single-row read is dominated by such overheads. AppErrors need no middleware of their own: the error
 * formatter and the REST adapter read them from the TRPCError's cause.
 */

export const publicProcedure = t.procedure.meta({ access: { kind: 'public' } });

/** For public procedures that still need a service ctx (login, refresh). */
export const anonymousProcedure = publicProcedure.use(({ ctx, next }) => next({ ctx: { svc: serviceCtxFor(ctx, null) } }));

async function signedIn(ctx: RequestContext) {
  const principal = await ctx.deps.authenticator.authenticate(ctx.authorization);
  return { principal, svc: serviceCtxFor(ctx, principal) as ActorCtx };
}

/** Any signed-in, active user. */
export const authedProcedure = t.procedure.meta({ access: { kind: 'authenticated' } }).use(async ({ ctx, next }) => next({ ctx: await signedIn(ctx) }));

/** Signed-in users whose role grants `permission` in the permission matrix. */
export const permissionProcedure = (permission: Permission) =>
  t.procedure.meta({ access: { kind: 'permission', permission } }).use(async ({ ctx, next, path }) => {
    const user = await signedIn(ctx);
    if (!roleHas(user.principal.role, permission)) {
      if (isAdminPermission(permission)) await recordAccessDenied(user.svc, permission, path);
      throw forbidden();
    }
    return next({ ctx: user });
  });

/** Refusals of administrative operations are audited on the caller's organisation chain. */
export function recordAccessDenied(svc: ActorCtx, permission: Permission, operation: string) {
  return recordAudit(svc, {
    action: 'access_denied',
    resourceType: 'operation',
    resourceId: operation,
    organizationId: svc.actor.organizationId,
    details: { permission, operation },
  });
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Project-scoped operations: the input names the project (`id`, or `project_id`); the caller's role in that
 * project decides, organisation admins hold every project permission, and a project the caller cannot see
 * answers 404. The resolved access is in ctx.project.
 */
export const projectProcedure = (permission: ProjectPermission, inputKey: 'id' | 'project_id' = 'id') =>
  t.procedure.meta({ access: { kind: 'project', permission } }).use(async ({ ctx, next, path, getRawInput }) => {
    const user = await signedIn(ctx);
    const raw = (await getRawInput()) as Record<string, unknown> | undefined;
    const projectId = raw?.[inputKey];
    if (typeof projectId !== 'string' || !UUID.test(projectId)) throw badField(inputKey, 'must be a UUID');
    const access = await resolveProjectAccess(user.svc, projectId);
    if (!accessAllows(access, permission)) {
      if (isAdminPermission(permission)) await recordAccessDenied(user.svc, permission, path);
      throw forbidden();
    }
    return next({ ctx: { ...user, project: access } });
  });


/**
 * For resources that may belong to a project (credentials): documented as the organisation-wide permission,
 * which suffices; the service also accepts the permission from the caller's role in the resource's project.
 */
export const projectAwareProcedure = (permission: Permission) =>
  t.procedure.meta({ access: { kind: 'permission', permission, orProject: true } }).use(async ({ ctx, next }) => next({ ctx: await signedIn(ctx) }));
