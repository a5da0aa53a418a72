import type { AnyRouter } from '@trpc/server';
import { generateOpenApiDocument, type OpenAPIObject } from 'trpc-to-openapi';
import { z } from 'zod';
import { ExportInput } from '../domains/audit/export.js';
import { PROBLEM_TITLES } from '../lib/errors.js';
import { collectRestRoutes } from './rest.js';

type Json = Record<string, any>;

const problemSchema = {
  type: 'object',
  description: 'RFC 9457 problem details',
  required: ['type', 'title', 'status', 'detail', 'request_id'],
  properties: {
    type: { type: 'string', description: 'Problem type URI' },
    title: { type: 'string' },
    status: { type: 'integer' },
    detail: { type: 'string' },
    request_id: { type: 'string', description: 'Echo of the x-request-id response header' },
    errors: {
      type: 'array',
      description: 'Per-field validation errors',
      items: {
        type: 'object',
        required: ['field', 'message'],
        properties: { field: { type: 'string' }, message: { type: 'string' }, code: { type: 'string' } },
      },
    },
  },
};

const problemResponse = (status: number) => ({
  description: PROBLEM_TITLES[status] ?? 'Error',
  content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
  ...(status === 429 ? { headers: { 'Retry-After': { schema: { type: 'integer' }, description: 'Seconds to wait' } } } : {}),
});

function queryParameters(schema: z.ZodObject): Json[] {
  return Object.entries(schema.shape).map(([name, field]) => {
    const json = z.toJSONSchema(field as z.ZodType, { io: 'input', unrepresentable: 'any' }) as Json;
    delete json.$schema;
    return { in: 'query', name, required: !(field as z.ZodType).safeParse(undefined).success, schema: json, ...(json.description ? { description: json.description } : {}) };
  });
}

/** Operations served by plain Hono routes, documented by hand so the document stays complete. */
const handWrittenPaths: Json = {
  '/internal/credentials/{id}/secret': {
    get: {
      operationId: 'internal-credential-secret',
      summary: 'Decrypted credential values for peer services (internal token only; every call audited)',
      tags: ['internal'],
      security: [{ appApiToken: [] }],
      'x-permission': 'internal',
      parameters: [
        { in: 'path', name: 'id', required: true, schema: { type: 'string', format: 'uuid' } },
        { in: 'header', name: 'dapr-caller-app-id', required: false, description: 'The calling service, recorded in the audit trail', schema: { type: 'string' } },
      ],
      responses: {
        200: {
          description: 'The credential with its secret values',
          content: { 'application/json': { schema: { type: 'object', properties: { id: { type: 'string' }, kind: { type: 'string' }, version: { type: 'integer' }, values: { type: 'object' } } } } },
        },
        400: { $ref: '#/components/responses/Problem400' },
        401: { $ref: '#/components/responses/Problem401' },
        404: { $ref: '#/components/responses/Problem404' },
        409: { $ref: '#/components/responses/Problem409' },
        500: { $ref: '#/components/responses/Problem500' },
      },
    },
  },
  '/auth/oauth/login': {
    get: {
      operationId: 'auth-oauth-login',
      summary: 'Start sign-in at the identity provider (authorization code + PKCE S256); Keycloak mode only',
      tags: ['auth'],
      security: [],
      'x-permission': 'public',
      responses: {
        302: { description: 'Redirect to the provider’s authorization endpoint', headers: { Location: { schema: { type: 'string' } } } },
        404: { $ref: '#/components/responses/Problem404' },
        503: { $ref: '#/components/responses/Problem503' },
      },
    },
  },
  '/auth/oauth/callback': {
    get: {
      operationId: 'auth-oauth-callback',
      summary: 'Finish sign-in: checks state (single use, 10 min) and the ID token’s nonce; returns the token pair, or redirects to FRONTEND_URL with a one-time code',
      tags: ['auth'],
      security: [],
      'x-permission': 'public',
      parameters: [
        { in: 'query', name: 'code', required: false, schema: { type: 'string' } },
        { in: 'query', name: 'state', required: false, schema: { type: 'string' } },
        { in: 'query', name: 'error', required: false, schema: { type: 'string' } },
      ],
      responses: {
        200: { description: 'Signed in', content: { 'application/json': { schema: { $ref: '#/components/schemas/TokenResponse' } } } },
        302: { description: 'Redirect to FRONTEND_URL?code=<one-time code for POST /auth/oauth/exchange>', headers: { Location: { schema: { type: 'string' } } } },
        400: { $ref: '#/components/responses/Problem400' },
        401: { $ref: '#/components/responses/Problem401' },
        403: { $ref: '#/components/responses/Problem403' },
        404: { $ref: '#/components/responses/Problem404' },
        503: { $ref: '#/components/responses/Problem503' },
      },
    },
  },
  '/audit/export': {
    get: {
      operationId: 'audit-export',
      summary: 'Export one audit chain as CSV or NDJSON (streamed; NDJSON ends with a signed manifest)',
      description:
        'Records in seq order, filtered like GET /audit. The export is itself audited and checkpointed first. Verify an NDJSON file offline with `npm run audit:verify -- <file>`.',
      tags: ['audit'],
      security: [{ bearerAuth: [] }],
      parameters: queryParameters(ExportInput),
      responses: {
        200: {
          description: 'The export, as an attachment',
          headers: { 'X-Audit-Checkpoint': { description: 'chain;seq=…;hash=…;key=…;sig=… of the checkpoint written for this export', schema: { type: 'string' } } },
          content: { 'application/x-ndjson': { schema: { type: 'string' } }, 'text/csv': { schema: { type: 'string' } } },
        },
        400: { $ref: '#/components/responses/Problem400' },
        401: { $ref: '#/components/responses/Problem401' },
        403: { $ref: '#/components/responses/Problem403' },
        500: { $ref: '#/components/responses/Problem500' },
      },
      'x-permission': 'audit:view',
      'x-permission-scope': 'organization',
    },
  },
  '/health': {
    get: {
      operationId: 'health',
      summary: 'Liveness: the process is up',
      tags: ['operations'],
      security: [],
      'x-permission': 'public',
      responses: { 200: { description: 'Alive', content: { 'application/json': { schema: { type: 'object', properties: { status: { type: 'string', enum: ['ok'] } } } } } } },
    },
  },
  '/ready': {
    get: {
      operationId: 'ready',
      summary: 'Readiness: the database is reachable and migrations are current',
      tags: ['operations'],
      security: [],
      'x-permission': 'public',
      responses: {
        200: { description: 'Ready', content: { 'application/json': { schema: { type: 'object', properties: { status: { type: 'string' }, checks: { type: 'object', additionalProperties: { type: 'string' } } } } } } },
        503: { $ref: '#/components/responses/Problem503' },
      },
    },
  },
  '/.well-known/jwks.json': {
    get: {
      operationId: 'jwks',
      summary: 'Public keys that verify access tokens of the embedded identity provider',
      tags: ['auth'],
      security: [],
      'x-permission': 'public',
      responses: { 200: { description: 'JSON Web Key Set', content: { 'application/json': { schema: { type: 'object', properties: { keys: { type: 'array', items: { type: 'object' } } } } } } } },
    },
  },
};

/**
 * The library derives paths, parameters and schemas from the router; we then replace its error responses
 * with our problem+json ones, set the real success status, and record the permission each operation needs
 * (x-permission), which the isolation tests read.
 */
export function buildOpenApiDocument(appRouter: AnyRouter, version: string): OpenAPIObject {
  const doc = generateOpenApiDocument(appRouter, {
    title: 'budapp',
    description:
      'Core API of Bud AI Foundry. JSON fields are snake_case; lists use ?limit and ?cursor; errors are RFC 9457 problem+json.',
    version,
    baseUrl: '/',
    securitySchemes: {
      bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
      appApiToken: { type: 'apiKey', in: 'header', name: 'x-app-api-token', description: 'APP_API_TOKEN (or Dapr’s dapr-api-token header)' },
    },
  }) as Json;

  const statuses = new Set<number>([400, 401, 403, 404, 409, 500, 503]);
  const routes = collectRestRoutes(appRouter);
  const versionedPaths = new Set(routes.filter((r) => r.meta.ifMatch).map((r) => r.path));
  for (const route of routes) {
    const op = doc.paths[route.path][route.method.toLowerCase()];
    const access = route.meta.access ?? { kind: 'public' };
    const errors = new Set<number>([500]);
    const hasInput = 'parameters' in op || 'requestBody' in op;
    if (hasInput || route.paramNames.length > 0) errors.add(400);
    if (access.kind !== 'public') errors.add(401);
    if (access.kind === 'permission' || access.kind === 'project') errors.add(403);
    if (route.paramNames.length > 0 || access.kind === 'project') errors.add(404);
    if (route.meta.ifMatch) errors.add(412);
    if (route.meta.idempotent) {
      errors.add(409);
      errors.add(422);
    }
    if ('requestBody' in op) {
      errors.add(413);
      errors.add(415);
    }
    for (const s of route.meta.errors ?? []) errors.add(s);

    const success = String(route.meta.successStatus ?? 200);
    const ok = op.responses['200'];
    if (versionedPaths.has(route.path)) ok.headers = { ETag: { description: 'The resource version, for If-Match', schema: { type: 'string' } } };
    op.responses = { [success]: ok };
    const headerParams: Json[] = [];
    if (route.meta.ifMatch) headerParams.push({ in: 'header', name: 'If-Match', required: false, description: 'ETag from a GET; 412 when the resource changed since', schema: { type: 'string' } });
    if (route.meta.idempotent) {
      headerParams.push({ in: 'header', name: 'Idempotency-Key', required: false, description: 'Retries with the same key and body replay the first response for 24 h; a different body answers 422', schema: { type: 'string', maxLength: 255 } });
    }
    if (headerParams.length > 0) op.parameters = [...(op.parameters ?? []), ...headerParams];
    for (const s of [...errors].sort()) {
      statuses.add(s);
      op.responses[s] = { $ref: `#/components/responses/Problem${s}` };
    }
    op.security = access.kind === 'public' ? [] : [{ bearerAuth: [] }];
    op['x-permission'] = access.kind === 'permission' || access.kind === 'project' ? access.permission : access.kind;
    if (access.kind === 'permission' || access.kind === 'project') op['x-permission-scope'] = access.kind === 'project' ? 'project' : 'organization';
    if (access.kind === 'permission' && access.orProject) op['x-permission-also-from-project-role'] = true;
  }

  doc.paths = { ...handWrittenPaths, ...doc.paths };
  doc.components ??= {};
  const schemas = Object.entries((doc.components.schemas ?? {}) as Json).filter(([name]) => !name.startsWith('error.'));
  doc.components.schemas = { ...Object.fromEntries(schemas), Problem: problemSchema };
  doc.components.responses = Object.fromEntries([...statuses].sort().map((s) => [`Problem${s}`, problemResponse(s)]));
  doc.servers = [{ url: '/' }];
  return doc as OpenAPIObject;
}
