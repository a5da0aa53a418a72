import { TRPCError } from '@trpc/server';
import { AppError, badField, forbidden } from '../lib/errors.js';
import { isAdminPermission, roleHas, type Permission, type ProjectPermission } from '../lib/permissions.js';
import { accessAllows, resolveProjectAccess } from '../domains/projects/access.js';
import type { Principal } from '../domains/auth/authenticator.js';
import { serviceCtxFor, type ServiceCtx } from '../domains/service-ctx.js';
import { recordAudit } from '../domains/audit/chain.js';
import { TRPC_CODE_OF } from './errors.js';
import { t } from './init.js';

/** Raises AppErrors as TRPCErrors with the matching code, keeping the AppError as the cause. */
const appErrors = t.middleware(async ({ next }) => {
  const result = await next();
  if (!result.ok && result.error.cause instanceof AppError) {
    const app = result.error.cause;
    return { ...result, error: new TRPCError({ code: TRPC_CODE_OF[app.code], message: app.detail, cause: app }) };
  }
  return result;
});

const base = t.procedure.use(appErrors);

export const publicProcedure = base.meta({ access: { kind: 'public' } });

/** For public procedures that still need a service ctx (login, refresh). */
export const anonymousProcedure = publicProcedure.use(({ ctx, next }) => next({ ctx: { svc: serviceCtxFor(ctx, null) } }));

const authenticated = base.use(async ({ ctx, next }) => {
  const principal = await ctx.deps.authenticator.authenticate(ctx.authorization);
  const svc = serviceCtxFor(ctx, principal);
  return next({ ctx: { principal, svc: { ...svc, actor: principal } as ServiceCtx & { actor: Principal } } });
});

/** Any signed-in, active user. */
export const authedProcedure = authenticated.meta({ access: { kind: 'authenticated' } });

/** Signed-in users whose role grants `permission` in the permission matrix. */
export const permissionProcedure = (permission: Permission) =>
  authenticated.meta({ access: { kind: 'permission', permission } }).use(async ({ ctx, next, path }) => {
    if (!roleHas(ctx.principal.role, permission)) {
      if (isAdminPermission(permission)) await recordAccessDenied(ctx.svc, permission, path);
      throw forbidden();
    }
    return next();
  });

/** Refusals of administrative operations are audited on the caller's organisation chain. */
export function recordAccessDenied(svc: ServiceCtx & { actor: Principal }, permission: Permission, operation: string) {
  return recordAudit(svc, {
    action: 'access_denied',
    resourceType: 'operation',
    resourceId: operation,
    organizationId: svc.actor.organizationId,
    details: { permission, operation },
  });
}

/**
 * Project-scoped operations: the input names the project (`id`, or `project_id`); the caller's role in that
 * project decides, organisation admins hold every project permission, and a project the caller cannot see
 * answers 404. The resolved access is in ctx.project.
 */
export const projectProcedure = (permission: ProjectPermission, inputKey: 'id' | 'project_id' = 'id') =>
  authenticated.meta({ access: { kind: 'project', permission } }).use(async ({ ctx, next, path, getRawInput }) => {
    const raw = (await getRawInput()) as Record<string, unknown> | undefined;
    const projectId = raw?.[inputKey];
    if (typeof projectId !== 'string' || !UUID.test(projectId)) throw badField(inputKey, 'must be a UUID');
    const access = await resolveProjectAccess(ctx.svc, projectId);
    if (!accessAllows(access, permission)) {
      if (isAdminPermission(permission)) await recordAccessDenied(ctx.svc, permission, path);
      throw forbidden();
    }
    return next({ ctx: { project: access } });
  });

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
