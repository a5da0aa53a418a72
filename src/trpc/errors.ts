import { TRPCError } from '@trpc/server';
import type { TRPC_ERROR_CODE_KEY } from '@trpc/server/rpc';
import { AppError, fieldErrorsFromIssues, problem, type Problem } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';

const STATUS_OF_TRPC: Partial<Record<TRPC_ERROR_CODE_KEY, number>> = {
  BAD_REQUEST: 400,
  PARSE_ERROR: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  METHOD_NOT_SUPPORTED: 405,
  CONFLICT: 409,
  PRECONDITION_FAILED: 412,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  UNPROCESSABLE_CONTENT: 422,
  TOO_MANY_REQUESTS: 429,
  SERVICE_UNAVAILABLE: 503,
};

export function trpcCodeForStatus(status: number): TRPC_ERROR_CODE_KEY | undefined {
  for (const [code, s] of Object.entries(STATUS_OF_TRPC)) if (s === status) return code as TRPC_ERROR_CODE_KEY;
  return status >= 500 ? 'INTERNAL_SERVER_ERROR' : undefined;
}

export interface ResolvedProblem {
  problem: Problem;
  retryAfterSeconds?: number;
}

interface PgError {
  code?: string;
  constraint_name?: string;
  constraint?: string;
}

function pgErrorOf(err: unknown): PgError | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as PgError).code;
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return e as PgError;
  }
  return undefined;
}

/**
 * The one place an error becomes something a client sees. Both transports call it: /trpc through the
 * errorFormatter, REST through the adapter. Anything not raised on purpose is logged in full and answered
 * with a generic 500 carrying only the request id.
 */
export function resolveProblem(err: unknown, requestId: string, log?: Logger): ResolvedProblem {
  const cause = err instanceof TRPCError && err.cause ? err.cause : err;
  if (cause instanceof AppError) {
    return {
      problem: problem(cause.status, cause.detail, requestId, cause.extra.errors),
      retryAfterSeconds: cause.extra.retryAfterSeconds,
    };
  }
  if (err instanceof TRPCError && err.code === 'BAD_REQUEST' && cause && Array.isArray((cause as { issues?: unknown }).issues)) {
    const errors = fieldErrorsFromIssues((cause as { issues: Parameters<typeof fieldErrorsFromIssues>[0] }).issues);
    const fields = [...new Set(errors.map((e) => e.field))].join(', ');
    return { problem: problem(400, `Invalid input: ${fields}`, requestId, errors) };
  }
  const pg = pgErrorOf(err);
  if (pg?.code === '23505') {
    return { problem: problem(409, 'A resource with the same unique value already exists', requestId) };
  }
  if (err instanceof TRPCError && err.code !== 'INTERNAL_SERVER_ERROR') {
    const status = STATUS_OF_TRPC[err.code];
    if (status) return { problem: problem(status, err.message, requestId) };
  }
  log?.error({ err, request_id: requestId }, 'unhandled error');
  return { problem: problem(500, 'An internal error occurred; quote the request id when reporting it', requestId) };
}

/** An error as an HTTP problem+json response (REST adapter and plain Hono routes). */
export function problemResponse(err: unknown, requestId: string, log?: Logger): Response {
  const resolved = resolveProblem(err, requestId, log);
  const headers: Record<string, string> = { 'content-type': 'application/problem+json' };
  if (resolved.retryAfterSeconds !== undefined) headers['retry-after'] = String(resolved.retryAfterSeconds);
  return new Response(JSON.stringify(resolved.problem), { status: resolved.problem.status, headers });
}
