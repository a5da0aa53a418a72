import { TRPCError } from '@trpc/server';
import { AppError, forbidden } from '../lib/errors.js';
import { roleHas, type Permission } from '../lib/permissions.js';
import type { Principal } from '../domains/auth/authenticator.js';
import type { ServiceCtx } from '../domains/service-ctx.js';
import type { RequestContext } from './context.js';
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

function serviceCtx(ctx: RequestContext, principal: Principal | null): ServiceCtx {
  const { deps } = ctx;
  return {
    db: deps.db,
    clock: deps.clock,
    ids: deps.ids,
    log: ctx.log,
    deps,
    actor: principal,
    requestId: ctx.requestId,
    ip: ctx.ip,
    userAgent: ctx.userAgent,
  };
}

/** For public procedures that still need a service ctx (login, refresh). */
export const anonymousProcedure = publicProcedure.use(({ ctx, next }) => next({ ctx: { svc: serviceCtx(ctx, null) } }));

const authenticated = base.use(async ({ ctx, next }) => {
  const principal = await ctx.deps.authenticator.authenticate(ctx.authorization);
  const svc = serviceCtx(ctx, principal);
  return next({ ctx: { principal, svc: { ...svc, actor: principal } as ServiceCtx & { actor: Principal } } });
});

/** Any signed-in, active user. */
export const authedProcedure = authenticated.meta({ access: { kind: 'authenticated' } });

/** Signed-in users whose role grants `permission` in the permission matrix. */
export const permissionProcedure = (permission: Permission) =>
  authenticated.meta({ access: { kind: 'permission', permission } }).use(({ ctx, next }) => {
    if (!roleHas(ctx.principal.role, permission)) throw forbidden();
    return next();
  });
