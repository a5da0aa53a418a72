import type { AnyProcedure, AnyRouter } from '@trpc/server';
import { invokeProcedure } from './invoke.js';
import type { Meta } from './init.js';
import type { RequestContext } from './context.js';
import { problem } from '../lib/errors.js';
import { JsonText } from '../lib/json-text.js';
import { problemResponse } from './errors.js';
import { canonicalJson, sha256Hex } from '../lib/audit/canonical.js';
import { beginIdempotent, completeIdempotent, releaseIdempotent } from '../domains/idempotency/service.js';

export interface RestRoute {
  method: string;
  /** The OpenAPI path template, e.g. /users/{id}. */
  path: string;
  procedurePath: string;
  procedure: AnyProcedure;
  meta: Meta;
  regex: RegExp;
  paramNames: string[];
  /** Literal segments rank before parameters: /models/leaderboard wins over /models/{id}. */
  rank: number[];
}

const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH']);

/** Reads every procedure that carries openapi meta, once, into a table ranked for matching. */
export function collectRestRoutes(appRouter: AnyRouter): RestRoute[] {
  const routes: RestRoute[] = [];
  const procedures = appRouter._def.procedures as Record<string, AnyProcedure>;
  for (const [procedurePath, procedure] of Object.entries(procedures)) {
    const meta = procedure._def.meta as Meta | undefined;
    const openapi = meta?.openapi;
    if (!openapi || openapi.enabled === false) continue;
    const segments = openapi.path.split('/').filter(Boolean);
    const paramNames: string[] = [];
    const pattern = segments
      .map((s) => {
        const m = s.match(/^\{(\w+)\}$/);
        if (m) {
          paramNames.push(m[1]!);
          return '/([^/]+)';
        }
        return `/${s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`;
      })
      .join('');
    routes.push({
      method: openapi.method,
      path: openapi.path,
      procedurePath,
      procedure,
      meta: meta!,
      regex: new RegExp(`^${pattern || '/'}$`),
      paramNames,
      rank: segments.map((s) => (s.startsWith('{') ? 1 : 0)),
    });
  }
  const cmp = (a: number[], b: number[]) => {
    for (let i = 0; i < Math.max(a.length, b.length); i++) if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) - (b[i] ?? 0);
    return 0;
  };
  return routes.sort((a, b) => cmp(a.rank, b.rank));
}

function json(body: unknown, status: number, headers: Record<string, string> = {}) {
  const text = body instanceof JsonText ? body.text : JSON.stringify(body);
  return new Response(text, { status, headers: { 'content-type': 'application/json', ...headers } });
}

function plainProblem(status: number, detail: string, requestId: string, headers: Record<string, string> = {}) {
  return new Response(JSON.stringify(problem(status, detail, requestId)), {
    status,
    headers: { 'content-type': 'application/problem+json', ...headers },
  });
}

/**
 * REST transport for the tRPC router, built once: the route table is compiled at start-up and each request
 * costs one regex scan plus a direct procedure call. trpc-to-openapi still generates the OpenAPI document
 * from the same meta, so the two cannot drift apart.
 */
export function createRestHandler(appRouter: AnyRouter) {
  const routes = collectRestRoutes(appRouter);

  return async function handleRest(req: Request, pathname: string, ctx: RequestContext): Promise<Response | undefined> {
    const path = pathname.length > 1 && pathname.endsWith('/') ? pathname.slice(0, -1) : pathname;
    let route: RestRoute | undefined;
    let match: RegExpExecArray | null = null;
    const allowed: string[] = [];
    for (const r of routes) {
      const m = r.regex.exec(path);
      if (!m) continue;
      if (r.method === req.method) {
        route = r;
        match = m;
        break;
      }
      allowed.push(r.method);
    }
    if (!route || !match) {
      if (allowed.length === 0) return undefined;
      return plainProblem(405, `Method ${req.method} is not allowed on ${path}`, ctx.requestId, {
        allow: [...new Set(allowed)].join(', '),
      });
    }

    const input: Record<string, unknown> = {};
    if (BODY_METHODS.has(route.method)) {
      const text = await req.text();
      if (text.trim() !== '') {
        const type = req.headers.get('content-type') ?? '';
        if (!/^application\/(.+\+)?json\b/i.test(type)) {
          return plainProblem(415, 'Request bodies must be application/json', ctx.requestId);
        }
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          return plainProblem(400, 'The request body is not valid JSON', ctx.requestId);
        }
        if (typeof body !== 'object' || body === null || Array.isArray(body)) {
          return plainProblem(400, 'The request body must be a JSON object', ctx.requestId);
        }
        Object.assign(input, body);
      }
    } else {
      const query = new URL(req.url).searchParams;
      for (const key of new Set(query.keys())) {
        const values = query.getAll(key);
        input[key] = values.length === 1 ? values[0] : values;
      }
    }
    for (let i = 0; i < route.paramNames.length; i++) {
      const name = route.paramNames[i]!;
      const raw = match[i + 1]!;
      let value = raw;
      try {
        value = decodeURIComponent(raw);
      } catch {
        /* keep it raw; the input schema rejects it */
      }
      // A body field named like a path parameter may only repeat it: it never redirects the operation.
      if (name in input && input[name] !== value) {
        return new Response(JSON.stringify(problem(400, `Invalid input: ${name}`, ctx.requestId, [{ field: name, message: 'must match the path' }])), {
          status: 400,
          headers: { 'content-type': 'application/problem+json' },
        });
      }
      input[name] = value;
    }

    const call = async (): Promise<Response> => {
      try {
        const output = await invokeProcedure(route!.procedure, { ctx, type: route!.procedure._def.type, path: route!.procedurePath, input });
        return successResponse(req, route!, output);
      } catch (err) {
        return problemResponse(err, ctx.requestId, ctx.log);
      }
    };

    if (route.meta.ifMatch) {
      const ifMatch = req.headers.get('if-match');
      if (ifMatch !== null && ifMatch.trim() !== '*') {
        const version = /^\s*(?:W\/)?"(\d{1,9})"\s*$/.exec(ifMatch)?.[1];
        if (!version) return plainProblem(412, 'If-Match must be the ETag of the resource, e.g. "3"', ctx.requestId);
        input.expected_version = Number(version);
      }
    }
    const idempotencyKey = route.meta.idempotent ? req.headers.get('idempotency-key') : null;
    if (idempotencyKey === null) return call();
    return withIdempotency(ctx, route, idempotencyKey, input, call);
  };
}

/** JSON with the route's success status; single resources with a version carry it as their ETag. */
function successResponse(req: Request, route: RestRoute, output: unknown): Response {
  const headers: Record<string, string> = {};
  const version = (output as { version?: unknown } | null)?.version;
  if (route.paramNames.length > 0 && typeof version === 'number') {
    const etag = `"${version}"`;
    headers.etag = etag;
    if (req.method === 'GET' && req.headers.get('if-none-match') === etag) return new Response(null, { status: 304, headers });
  }
  return json(output, route.meta.successStatus ?? 200, headers);
}

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

async function withIdempotency(ctx: RequestContext, route: RestRoute, key: string, input: Record<string, unknown>, call: () => Promise<Response>) {
  if (!IDEMPOTENCY_KEY.test(key)) return plainProblem(400, 'Idempotency-Key must be 1–255 visible ASCII characters', ctx.requestId);
  let userId: string;
  try {
    userId = (await ctx.deps.authenticator.authenticate(ctx.authorization)).userId;
  } catch {
    return call(); // the procedure answers 401 itself
  }
  const db = ctx.deps.db;
  const claim = { userId, key, route: `${route.method} ${route.path}`, requestHash: sha256Hex(canonicalJson(input)) };
  const start = await beginIdempotent(db, ctx.deps.clock, claim);
  if (start.kind === 'mismatch') return plainProblem(422, 'This Idempotency-Key was used with a different request', ctx.requestId);
  if (start.kind === 'in_progress') return plainProblem(409, 'A request with this Idempotency-Key is still in progress', ctx.requestId);
  if (start.kind === 'replay') {
    const type = start.status >= 400 ? 'application/problem+json' : 'application/json';
    return new Response(start.body, { status: start.status, headers: { 'content-type': type, 'idempotent-replayed': 'true' } });
  }
  const response = await call();
  const body = await response.clone().text();
  if (response.status >= 500) await releaseIdempotent(db, userId, key);
  else await completeIdempotent(db, userId, key, response.status, body);
  return response;
}

