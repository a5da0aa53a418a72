/**
 * The raw baseline for `npm run bench`: a bare Hono app on @hono/node-server (the packages the service
 * uses) with one route, GET /users/:id, doing the work of an authenticated single-row read and nothing
 * else: parse the bearer token, verify it with jose against the service's public key (same algorithm,
 * issuer, audience, typ and claim checks as LocalTokenIssuer.verify, and no caching of the result),
 * one SQL select through postgres.js with the service's default pool size, and the row as snake_case JSON.
 *
 * Env: DATABASE_URL, PORT, JWT_PUBLIC_KEY_FILE (SPKI PEM), optional RAW_POOL_SIZE (default 10),
 * JWT_ISSUER / JWT_AUDIENCE (default budapp), RAW_PREPARE (default true: postgres.js's own default).
 */
import { serve } from '@hono/node-server';
import { createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Hono } from 'hono';
import { jwtVerify } from 'jose';
import postgres from 'postgres';

function required(name: string): string {
  const value = process.env[name];
  if (!value) {
    process.stderr.write(`raw-server: ${name} is required\n`);
    process.exit(2);
  }
  return value;
}

const databaseUrl = required('DATABASE_URL');
const publicKey = createPublicKey(readFileSync(required('JWT_PUBLIC_KEY_FILE'), 'utf8'));
const port = Number(process.env.PORT ?? 0);
const issuer = process.env.JWT_ISSUER ?? 'budapp';
const audience = process.env.JWT_AUDIENCE ?? 'budapp';
const poolSize = Number(process.env.RAW_POOL_SIZE ?? 10);
const prepare = process.env.RAW_PREPARE !== 'false';
// The service's defaults (TOKEN_CLOCK_SKEW_SECONDS, ACCESS_TOKEN_TTL_SECONDS).
const clockSkewSeconds = 30;
const accessTokenTtlSeconds = 900;

const sql = postgres(databaseUrl, { max: poolSize, prepare, onnotice: () => {} });

const unauthorized = { status: 401, title: 'Unauthorized', detail: 'Invalid or expired access token' };
const notFound = { status: 404, title: 'Not Found', detail: 'No such user' };

const app = new Hono();

app.get('/users/:id', async (c) => {
  const match = c.req.header('authorization')?.trim().match(/^bearer\s+(\S+)$/i);
  if (!match) return c.json(unauthorized, 401);
  let org: string;
  try {
    const { payload } = await jwtVerify(match[1]!, publicKey, {
      algorithms: ['EdDSA'],
      issuer,
      audience,
      typ: 'at+jwt',
      clockTolerance: clockSkewSeconds,
      maxTokenAge: accessTokenTtlSeconds, // jose adds clockTolerance to this itself
      requiredClaims: ['sub', 'jti', 'exp', 'iat'],
    });
    if (typeof payload.org !== 'string') return c.json(unauthorized, 401);
    org = payload.org;
  } catch {
    return c.json(unauthorized, 401);
  }
  const [row] = await sql`
    select id, email, name, keycloak_id, organization_id, role, status, is_active, created_at, updated_at
    from users where id = ${c.req.param('id')} and organization_id = ${org}`;
  if (!row) return c.json(notFound, 404);
  return c.json({
    id: row.id,
    email: row.email,
    name: row.name,
    keycloak_id: row.keycloak_id,
    organization_id: row.organization_id,
    role: row.role,
    status: row.status,
    is_active: row.is_active,
    created_at: (row.created_at as Date).toISOString(),
    updated_at: (row.updated_at as Date).toISOString(),
  });
});

app.onError((err, c) => {
  process.stderr.write(`raw-server: ${err instanceof Error ? err.stack : String(err)}\n`);
  return c.json({ status: 500, title: 'Internal Server Error' }, 500);
});

const server = serve({ fetch: app.fetch, port, hostname: '127.0.0.1' });

/** Like the service: stop accepting, let in-flight requests finish, then close the pool. */
const stop = () => {
  const force = setTimeout(() => process.exit(0), 5_000);
  force.unref();
  server.close(() => {
    sql.end({ timeout: 2 }).finally(() => process.exit(0));
  });
  (server as unknown as { closeIdleConnections?: () => void }).closeIdleConnections?.();
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
