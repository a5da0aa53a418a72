/**
 * The one application error. Services throw it; the tRPC layer maps `code` once to a tRPC code and the
 * REST layer to an HTTP status and an RFC 9457 problem document.
 */
export const APP_ERROR_STATUS = {
  BAD_REQUEST: 400,
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  CONFLICT: 409,
  PRECONDITION_FAILED: 412,
  PAYLOAD_TOO_LARGE: 413,
  UNPROCESSABLE: 422,
  RATE_LIMITED: 429,
  INTERNAL: 500,
  UNAVAILABLE: 503,
} as const;

export type AppErrorCode = keyof typeof APP_ERROR_STATUS;

export interface FieldError {
  field: string;
  message: string;
  code?: string;
}

export interface AppErrorExtra {
  errors?: FieldError[];
  retryAfterSeconds?: number;
  cause?: unknown;
}

export class AppError extends Error {
  override name = 'AppError';
  readonly status: number;
  constructor(
    readonly code: AppErrorCode,
    readonly detail: string,
    readonly extra: AppErrorExtra = {},
  ) {
    super(detail, { cause: extra.cause });
    this.status = APP_ERROR_STATUS[code];
  }
}

export const notFound = (what: string) => new AppError('NOT_FOUND', `${what} not found`);
export const conflict = (detail: string) => new AppError('CONFLICT', detail);
export const forbidden = (detail = 'You do not have permission to perform this operation') =>
  new AppError('FORBIDDEN', detail);
export const badField = (field: string, message: string) =>
  new AppError('BAD_REQUEST', `Invalid ${field}: ${message}`, { errors: [{ field, message }] });

export const PROBLEM_TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  412: 'Precondition Failed',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  request_id: string;
  errors?: FieldError[];
}

export function problem(status: number, detail: string, requestId: string, errors?: FieldError[]): Problem {
  const title = PROBLEM_TITLES[status] ?? 'Error';
  return {
    type: `urn:budapp:problem:${title.toLowerCase().replace(/[^a-z]+/g, '-')}`,
    title,
    status,
    detail,
    request_id: requestId,
    ...(errors && errors.length > 0 ? { errors } : {}),
  };
}

/** Turns zod issues (from a tRPC input parse or our own) into per-field errors. */
export function fieldErrorsFromIssues(
  issues: ReadonlyArray<{ path: ReadonlyArray<PropertyKey>; message: string; code?: string; keys?: string[] }>,
): FieldError[] {
  const out: FieldError[] = [];
  for (const issue of issues) {
    const base = issue.path.map(String).join('.');
    if (issue.code === 'unrecognized_keys' && issue.keys) {
      for (const key of issue.keys) {
        out.push({ field: base ? `${base}.${key}` : key, message: 'unknown field', code: issue.code });
      }
      continue;
    }
    out.push({ field: base || '(body)', message: issue.message, code: issue.code });
  }
  return out;
}
