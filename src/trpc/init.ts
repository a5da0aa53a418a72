import { initTRPC } from '@trpc/server';
import type { OpenApiMeta } from 'trpc-to-openapi';
import type { Permission, ProjectPermission } from '../lib/permissions.js';
import type { RequestContext } from './context.js';
import { TRPC_ERROR_CODES_BY_KEY } from '@trpc/server/rpc';
import { resolveProblem, trpcCodeForStatus } from './errors.js';

export type Access =
  | { kind: 'public' }
  | { kind: 'authenticated' }
  /** orProject: a resource scoped to a project also accepts the permission from the caller's project role (checked by the service). */
  | { kind: 'permission'; permission: Permission; orProject?: boolean }
  /** Checked against the caller's role in the project named by the input (organisation admins hold all). */
  | { kind: 'project'; permission: ProjectPermission };

export type Meta = OpenApiMeta<{
  /** Who may call the procedure; the REST layer and the OpenAPI document read it too. */
  access?: Access;
  /** HTTP status of a successful REST response (default 200). */
  successStatus?: 200 | 201 | 202;
  /** Error statuses this operation can answer besides the ones implied by its access and input. */
  errors?: number[];
  /** REST: an Idempotency-Key header makes a retried POST replay its first response. */
  idempotent?: boolean;
  /** REST: the If-Match header is passed to the input as expected_version (412 on mismatch). */
  ifMatch?: boolean;
}>;

export const t = initTRPC
  .context<RequestContext>()
  .meta<Meta>()
  .create({
    isDev: false,
    errorFormatter({ shape, error, ctx }) {
      const { problem } = resolveProblem(error, ctx?.requestId ?? 'unknown', ctx?.log);
      // The tRPC code follows the problem's status, so an AppError thrown anywhere keeps its meaning.
      const code = trpcCodeForStatus(problem.status) ?? shape.data.code;
      return {
        message: problem.detail,
        code: TRPC_ERROR_CODES_BY_KEY[code],
        data: { code, httpStatus: problem.status, path: shape.data.path, problem },
      };
    },
  });

export const router = t.router;
