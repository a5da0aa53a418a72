import { PACKAGE_ROOT } from './lib/package-root.js';
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fetchRequestHandler } from '@trpc/server/adapters/fetch';
import { Hono, type Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import type { Deps } from './deps.js';
import { AppError, fieldErrorsFromIssues, forbidden, problem } from './lib/errors.js';
import { createAccessLogger } from './lib/logger.js';
import { roleHas } from './lib/permissions.js';
import { ExportInput, exportAudit } from './domains/audit/export.js';
import { oauthCallback, oauthStart } from './domains/auth/keycloak.js';
import { revealForService } from './domains/credentials/service.js';
import { serviceCtxFor } from './domains/service-ctx.js';
import { problemResponse } from './trpc/errors.js';
import { recordAccessDenied } from './trpc/procedures.js';
import { createRequestContext, type RequestContext } from './trpc/context.js';
import { buildOpenApiDocument } from './trpc/openapi.js';
import { createFastQueryHandler } from './trpc/fast-query.js';
import { createRestHandler } from './trpc/rest.js';
import { appRouter } from './trpc/router.js';

const SANE_REQUEST_ID = /^[A-Za-z0-9._:-]{8,128}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Constant-time comparison of the internal token (hashing first makes the lengths equal). */
function internalTokenValid(expected: string | undefined, presented: string | undefined): boolean {
  if (!expected || !presented) return false;
  const digest = (v: string) => createHash('sha256').update(v).digest();
  return timingSafeEqual(digest(expected), digest(presented));
}
const VERSION: string = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')).version;

type Env = { Variables: { requestId: string; ctx: RequestContext }; Bindings: { incoming?: { socket?: { remoteAddress?: string } } } };

// Resolve the package's folder without loading its 1 MB bundle into the process.
const swaggerDir: string = dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));
const SWAGGER_ASSETS: Record<string, string> = {
  'swagger-ui.css': 'text/css; charset=utf-8',
  'swagger-ui-bundle.js': 'text/javascript; charset=utf-8',
  'swagger-ui-standalone-preset.js': 'text/javascript; charset=utf-8',
  'favicon-32x32.png': 'image/png',
};
const DOCS_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>budapp API</title>
<link rel="icon" href="/docs/assets/favicon-32x32.png"><link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/swagger-ui-standalone-preset.js"></script>
<script src="/docs/init.js"></script></body></html>`;
const DOCS_INIT = `window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#swagger-ui', deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset], layout: 'StandaloneLayout' });`;

function clientIp(c: Context<Env>, trustProxy: boolean): string {
  if (trustProxy) {
    const forwarded = c.req.header('x-forwarded-for')?.split(',')[0]?.trim();
    if (forwarded) return forwarded;
  }
  return c.env?.incoming?.socket?.remoteAddress ?? 'unknown';
}

const problemJson = (c: Context<Env>, status: number, detail: string) =>
  c.body(JSON.stringify(problem(status, detail, c.get('requestId'))), status as 400, {
    'content-type': 'application/problem+json',
  });

export function createApp(deps: Deps) {
  const app = new Hono<Env>();
  const openApiDocument = buildOpenApiDocument(appRouter, VERSION);
  const openApiJson = JSON.stringify(openApiDocument);
  const handleRest = createRestHandler(appRouter);
  const handleFastQuery = createFastQueryHandler(appRouter);
  const assetCache = new Map<string, Uint8Array<ArrayBuffer>>();
  const logRequest = createAccessLogger(deps.log);

  app.use(async (c, next) => {
    const incoming = c.req.header('x-request-id');
    const requestId = incoming && SANE_REQUEST_ID.test(incoming) ? incoming : deps.ids.uuid();
    const log = deps.log.child({ request_id: requestId });
    c.set('requestId', requestId);
    c.set('ctx', createRequestContext(deps, c.req.raw, { requestId, ip: clientIp(c, deps.config.trustProxy), log }));
    const started = performance.now();
    await next();
    // On the finished response itself: c.header() here would rebuild the response.
    c.res.headers.set('x-request-id', requestId);
    c.res.headers.set('x-content-type-options', 'nosniff');
    logRequest({ request_id: requestId, method: c.req.method, path: c.req.path, status: c.res.status, duration_ms: Math.round((performance.now() - started) * 10) / 10 });
  });

  const limitBody = bodyLimit({
    maxSize: deps.config.bodyLimitBytes,
    onError: (c) => problemJson(c as Context<Env>, 413, `The request body exceeds ${deps.config.bodyLimitBytes} bytes`),
  });
  // Only requests that can carry a body pay for the check (it materialises the full Request).
  const BODYLESS = new Set(['GET', 'HEAD', 'OPTIONS']);
  app.use((c, next) => (BODYLESS.has(c.req.method) ? next() : limitBody(c, next)));

  app.onError((err, c) => {
    c.get('ctx')?.log.error({ err }, 'unhandled error');
    return problemJson(c, 500, 'An internal error occurred; quote the request id when reporting it');
  });
  app.notFound((c) => problemJson(c, 404, `No route for ${c.req.method} ${c.req.path}`));

  app.get('/health', (c) => c.json({ status: 'ok' }));
  app.get('/ready', async (c) => {
    try {
      await deps.database.ping();
    } catch {
      return problemJson(c, 503, 'The database is not reachable');
    }
    if (!(await deps.database.migrationsCurrent())) return problemJson(c, 503, 'Database migrations are not current');
    if (deps.keycloak && !(await deps.keycloak.ready())) return problemJson(c, 503, 'The identity provider is not reachable');
    return c.json({ status: 'ready', checks: { database: 'ok', migrations: 'current', ...(deps.keycloak ? { identity_provider: 'ok' } : {}) } });
  });
  app.get('/.well-known/jwks.json', (c) => {
    if (deps.keycloak) return problemJson(c, 404, 'Tokens are issued by the identity provider; see its JWKS');
    c.header('cache-control', 'public, max-age=300');
    return c.json(deps.tokens.jwks);
  });
  app.get('/openapi.json', (c) => c.body(openApiJson, 200, { 'content-type': 'application/json' }));
  app.get('/docs', (c) => c.html(DOCS_HTML));
  app.get('/docs/init.js', (c) => c.body(DOCS_INIT, 200, { 'content-type': 'text/javascript; charset=utf-8' }));
  app.get('/docs/assets/:file', (c) => {
    const file = c.req.param('file');
    const type = SWAGGER_ASSETS[file];
    if (!type) return problemJson(c, 404, 'No such documentation asset');
    let bytes = assetCache.get(file);
    if (!bytes) assetCache.set(file, (bytes = new Uint8Array(readFileSync(join(swaggerDir, file)))));
    return c.body(bytes, 200, { 'content-type': type, 'cache-control': 'public, max-age=86400' });
  });

  app.all('/trpc/*', async (c) => {
    const fast = await handleFastQuery(c.req.raw, new URL(c.req.url), c.get('ctx'));
    return (
      fast ??
      fetchRequestHandler({
        endpoint: '/trpc',
        req: c.req.raw,
        router: appRouter,
        createContext: () => c.get('ctx'),
      })
    );
  });

  const oauthDisabled = (c: Context<Env>) => problemJson(c, 404, 'OAuth sign-in is available only with KEYCLOAK_URL');
  app.get('/auth/oauth/login', async (c) => {
    if (!deps.keycloak) return oauthDisabled(c);
    const ctx = c.get('ctx');
    try {
      return c.redirect(await oauthStart(serviceCtxFor(ctx, null)), 302);
    } catch (err) {
      return problemResponse(err, ctx.requestId, ctx.log);
    }
  });
  app.get('/auth/oauth/callback', async (c) => {
    if (!deps.keycloak) return oauthDisabled(c);
    const ctx = c.get('ctx');
    try {
      const q = c.req.query();
      const result = await oauthCallback(serviceCtxFor(ctx, null), { code: q.code, state: q.state, error: q.error });
      c.header('cache-control', 'no-store');
      return result.kind === 'redirect' ? c.redirect(result.location, 302) : c.json(result.tokens);
    } catch (err) {
      return problemResponse(err, ctx.requestId, ctx.log);
    }
  });

  app.get('/internal/credentials/:id/secret', async (c) => {
    const ctx = c.get('ctx');
    try {
      if (!internalTokenValid(deps.config.appApiToken, c.req.header('x-app-api-token') ?? c.req.header('dapr-api-token'))) {
        throw new AppError('UNAUTHENTICATED', 'This route needs the internal service token');
      }
      const id = c.req.param('id');
      if (!UUID.test(id)) throw new AppError('BAD_REQUEST', 'Invalid input: id', { errors: [{ field: 'id', message: 'must be a UUID' }] });
      const requestedBy = (c.req.header('dapr-caller-app-id') ?? c.req.header('x-requested-by') ?? 'unknown').slice(0, 200);
      const secret = await revealForService(serviceCtxFor(ctx, null), id, requestedBy);
      c.header('cache-control', 'no-store');
      return c.json(secret);
    } catch (err) {
      return problemResponse(err, ctx.requestId, ctx.log);
    }
  });

  app.get('/audit/export', async (c) => {
    const ctx = c.get('ctx');
    try {
      const principal = await deps.authenticator.authenticate(ctx.authorization);
      const svc = { ...serviceCtxFor(ctx, principal), actor: principal };
      if (!roleHas(principal.role, 'audit:view')) {
        await recordAccessDenied(svc, 'audit:view', 'audit.export');
        throw forbidden();
      }
      const query = Object.fromEntries(new URL(c.req.url).searchParams);
      const parsed = ExportInput.safeParse(query);
      if (!parsed.success) {
        const errors = fieldErrorsFromIssues(parsed.error.issues);
        throw new AppError('BAD_REQUEST', `Invalid input: ${errors.map((e) => e.field).join(', ')}`, { errors });
      }
      const result = await exportAudit(svc, parsed.data);
      const headers: Record<string, string> = {
        'content-type': result.contentType,
        'content-disposition': `attachment; filename="${result.filename}"`,
        'cache-control': 'no-store',
      };
      if (result.checkpoint) {
        headers['x-audit-checkpoint'] = `${result.checkpoint.chainId};seq=${result.checkpoint.seq};hash=${result.checkpoint.headHash};key=${result.checkpoint.keyId};sig=${result.checkpoint.signature}`;
      }
      return new Response(result.stream, { status: 200, headers });
    } catch (err) {
      return problemResponse(err, ctx.requestId, ctx.log);
    }
  });

  app.all('*', async (c) => {
    const response = await handleRest(c.req.raw, c.req.path, c.get('ctx'));
    return response ?? problemJson(c, 404, `No route for ${c.req.method} ${c.req.path}`);
  });

  return app;
}

export type App = ReturnType<typeof createApp>;
