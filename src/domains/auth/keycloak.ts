import { eq, sql } from 'drizzle-orm';
import type { JWTPayload } from 'jose';
import type { KeycloakConfig } from '../../config.js';
import type { Deps } from '../../deps.js';
import { organizations } from '../../db/schema/organizations.js';
import { users, type Role, type UserRow } from '../../db/schema/users.js';
import { AppError, badField } from '../../lib/errors.js';
import { ROLE_RANK } from '../../lib/permissions.js';
import type { KeycloakClient, OidcTokenSet } from '../../platform/identity/keycloak.js';
import { randomToken } from '../../platform/identity/keycloak.js';
import type { VerifiedAccessToken } from '../../platform/identity/local-issuer.js';
import { appendAudit, recordAudit } from '../audit/chain.js';
import { inTransaction, type ActorCtx, type ServiceCtx } from '../service-ctx.js';
import { toUserDto } from '../users/schemas.js';
import { insertUserAudited } from '../users/service.js';
import type { TokenResponse } from './schemas.js';

const SUBJECT_CACHE_SECONDS = 300;
const OAUTH_STATE_SECONDS = 600;
const EXCHANGE_CODE_SECONDS = 60;

function claimAt(claims: JWTPayload, path: string): unknown {
  return path.split('.').reduce<unknown>((v, key) => (v && typeof v === 'object' ? (v as Record<string, unknown>)[key] : undefined), claims);
}

/**
 * Our role from the provider's role claims: the highest-ranked of our role names found. undefined when no
 * role claim is readable at all — the caller then keeps the stored role (never silently raised or lowered).
 * super_admin is never granted from a token.
 */
export function roleFromClaims(claims: JWTPayload, config: KeycloakConfig): Role | undefined {
  const lists = config.roleClaims.map((path) => claimAt(claims, path)).filter(Array.isArray) as unknown[][];
  if (lists.length === 0) return undefined;
  const names = new Set(lists.flat().filter((r): r is string => typeof r === 'string'));
  const ranked = (['admin', 'devops', 'developer', 'tester'] as const).filter((r) => names.has(r));
  return ranked.sort((a, b) => ROLE_RANK[b] - ROLE_RANK[a])[0] ?? config.defaultRole;
}

/** The organisation claim may be an id, a name, a list of names, or Keycloak's organizations object. */
async function organizationFromClaims(ctx: ServiceCtx, claims: JWTPayload, config: KeycloakConfig): Promise<string> {
  const raw = claimAt(claims, config.organizationClaim);
  const candidate = typeof raw === 'string' ? raw : Array.isArray(raw) ? raw[0] : raw && typeof raw === 'object' ? Object.keys(raw)[0] : undefined;
  if (typeof candidate === 'string' && candidate.length > 0) {
    const [org] = await ctx.db
      .select({ id: organizations.id })
      .from(organizations)
      .where(sql`${organizations.id}::text = ${candidate} or lower(${organizations.name}) = lower(${candidate})`);
    if (org) return org.id;
  }
  const [fallback] = await ctx.db
    .select({ id: organizations.id })
    .from(organizations)
    .where(sql`lower(${organizations.name}) = lower(${ctx.deps.config.bootstrap.defaultOrganizationName})`);
  if (!fallback) throw new AppError('INTERNAL', 'the default organisation is missing');
  return fallback.id;
}

/**
 * Finds the user for a provider subject, creating it on first sight (keycloak_id = sub). With `sync`, as on
 * every sign-in, the stored role follows the provider's role claims (when readable) and the change is audited.
 */
export async function provisionUser(ctx: ServiceCtx, claims: JWTPayload, sync: boolean): Promise<UserRow> {
  const config = ctx.deps.config.keycloak!;
  const sub = String(claims.sub);
  return inTransaction(ctx, async (tx) => {
    const [existing] = await tx.db.select().from(users).where(eq(users.keycloakId, sub));
    const role = roleFromClaims(claims, config);
    if (existing) {
      if (!sync || role === undefined || role === existing.role || existing.role === 'super_admin') return existing;
      const [row] = await tx.db.update(users).set({ role, updatedAt: ctx.clock.now() }).where(eq(users.id, existing.id)).returning();
      await appendAudit(tx, {
        action: 'update',
        resourceType: 'user',
        resourceId: existing.id,
        organizationId: existing.organizationId,
        userId: null,
        actorType: 'service',
        details: { changes: { role: { old: existing.role, new: role } } },
      });
      await ctx.deps.authenticator.forgetUser(existing.id);
      return row!;
    }
    const email = typeof claims.email === 'string' ? claims.email.toLowerCase() : `${sub}@users.invalid`;
    const [byEmail] = await tx.db.select().from(users).where(sql`lower(${users.email}) = ${email}`);
    if (byEmail) {
      if (byEmail.keycloakId) throw new AppError('CONFLICT', 'This email belongs to another identity-provider account');
      // Only a verified email may claim an existing account (else an unverified sign-up could take it over).
      if (claims.email_verified !== true) throw new AppError('CONFLICT', 'An account with this email exists; verify the email at the identity provider first');
      // A user created here before their first sign-in (or before the switch to Keycloak): link it.
      const [row] = await tx.db.update(users).set({ keycloakId: sub, updatedAt: ctx.clock.now() }).where(eq(users.id, byEmail.id)).returning();
      await appendAudit(tx, {
        action: 'update',
        resourceType: 'user',
        resourceId: byEmail.id,
        organizationId: byEmail.organizationId,
        userId: null,
        actorType: 'service',
        details: { changes: { keycloak_id: { old: null, new: sub } } },
      });
      return row!;
    }
    const name = typeof claims.name === 'string' && claims.name.trim() ? claims.name.trim().slice(0, 120) : email;
    return insertUserAudited(
      tx,
      {
        email,
        name,
        keycloakId: sub,
        organizationId: await organizationFromClaims(tx, claims, config),
        role: role ?? config.defaultRole,
        status: 'active',
      },
      { actorType: 'service', extra: { provisioned_from: 'identity_provider' } },
    );
  });
}

/** The authenticator's subject → user mapping in Keycloak mode (cached; provisions on first sight). */
export async function resolveKeycloakUser(deps: Deps, token: VerifiedAccessToken): Promise<string | undefined> {
  const key = `kcsub:${token.subject}`;
  const cached = await deps.cache.get(key);
  if (cached) return cached;
  const [row] = await deps.db.select({ id: users.id }).from(users).where(eq(users.keycloakId, token.subject));
  const id =
    row?.id ??
    (
      await provisionUser(
        { db: deps.db, clock: deps.clock, ids: deps.ids, log: deps.log, deps, actor: null, requestId: 'jit-provisioning', ip: 'unknown', userAgent: '' },
        token.claims,
        false,
      )
    ).id;
  await deps.cache.set(key, id, SUBJECT_CACHE_SECONDS);
  return id;
}

function tokenResponse(set: OidcTokenSet, user: UserRow): TokenResponse {
  if (!set.refresh_token) throw new AppError('UNAVAILABLE', 'The identity provider issued no refresh token');
  return {
    access_token: set.access_token,
    refresh_token: set.refresh_token,
    token_type: 'Bearer',
    expires_in: set.expires_in,
    refresh_expires_in: set.refresh_expires_in ?? 0,
    user: toUserDto(user),
  };
}

/** A sign-in through the provider: verify, provision or sync, refuse deactivated users, audit. */
async function signIn(ctx: ServiceCtx, client: KeycloakClient, set: OidcTokenSet, how: 'password' | 'oauth') {
  const verified = await client.verifyAccessToken(set.access_token);
  const user = await provisionUser(ctx, verified.claims, true);
  if (user.status !== 'active') {
    await recordAudit(ctx, {
      action: 'login_failed',
      resourceType: 'user',
      resourceId: user.id,
      organizationId: user.organizationId,
      userId: null,
      details: { reason: 'deactivated', email: user.email },
    });
    if (set.refresh_token) await client.revoke(set.refresh_token).catch(() => {});
    throw new AppError('FORBIDDEN', 'This account is deactivated');
  }
  const family = typeof verified.claims.sid === 'string' ? verified.claims.sid : verified.jti;
  await recordAudit(ctx, {
    action: 'login',
    resourceType: 'session',
    resourceId: family,
    organizationId: user.organizationId,
    userId: user.id,
    details: { family_id: family, method: how },
  });
  await ctx.deps.cache.set(`kcsub:${verified.subject}`, user.id, SUBJECT_CACHE_SECONDS);
  return tokenResponse(set, user);
}

export async function keycloakLogin(ctx: ServiceCtx, email: string, password: string): Promise<TokenResponse> {
  const client = ctx.deps.keycloak!;
  if (!client.config.passwordGrant) {
    throw new AppError('FORBIDDEN', 'Password sign-in is disabled; use GET /auth/oauth/login');
  }
  let set: OidcTokenSet;
  try {
    set = await client.passwordGrant(email, password);
  } catch (err) {
    if (err instanceof AppError && err.code === 'UNAUTHENTICATED') {
      await recordAudit(ctx, { action: 'login_failed', resourceType: 'user', organizationId: null, userId: null, details: { reason: 'idp_rejected', email } });
      throw new AppError('UNAUTHENTICATED', 'Invalid email or password');
    }
    throw err;
  }
  return signIn(ctx, client, set, 'password');
}

export async function keycloakRefresh(ctx: ServiceCtx, refreshToken: string): Promise<TokenResponse> {
  const client = ctx.deps.keycloak!;
  let set: OidcTokenSet;
  try {
    set = await client.refreshGrant(refreshToken);
  } catch (err) {
    if (err instanceof AppError && err.code === 'UNAUTHENTICATED') throw new AppError('UNAUTHENTICATED', 'Invalid or expired refresh token');
    throw err;
  }
  const verified = await client.verifyAccessToken(set.access_token);
  const user = await provisionUser(ctx, verified.claims, false);
  if (user.status !== 'active') throw new AppError('UNAUTHENTICATED', 'Invalid or expired refresh token');
  const family = typeof verified.claims.sid === 'string' ? verified.claims.sid : verified.jti;
  await recordAudit(ctx, { action: 'token_refresh', resourceType: 'session', resourceId: family, organizationId: user.organizationId, userId: user.id, details: { family_id: family } });
  return tokenResponse(set, user);
}

export async function keycloakLogout(ctx: ActorCtx, refreshToken: string) {
  await ctx.deps.authenticator.denyToken(ctx.actor.jti, ctx.actor.exp);
  await recordAudit(ctx, { action: 'logout', resourceType: 'session', organizationId: ctx.actor.organizationId, details: { family_revoked: true } });
  try {
    await ctx.deps.keycloak!.revoke(refreshToken);
  } catch (cause) {
    throw new AppError('UNAVAILABLE', 'Signed out here, but the identity provider could not be reached to end the session; try again', { cause });
  }
  return { logged_out: true as const };
}

// --- Authorization code + PKCE ---------------------------------------------------------------------------

interface OauthState {
  nonce: string;
  codeVerifier: string;
}

/** Starts the code flow: state, nonce and PKCE verifier stay server-side, single use, for 10 minutes. */
export async function oauthStart(ctx: ServiceCtx): Promise<string> {
  const client = ctx.deps.keycloak!;
  const state = randomToken();
  const stored: OauthState = { nonce: randomToken(), codeVerifier: randomToken() };
  await ctx.deps.cache.set(`oauth:state:${state}`, JSON.stringify(stored), OAUTH_STATE_SECONDS);
  return client.authorizationUrl({ state, ...stored });
}


/**
 * Finishes the code flow. Returns the token pair, or — with FRONTEND_URL — a redirect carrying a one-time
 * code the frontend trades at POST /auth/oauth/exchange (tokens never travel in a URL).
 */
export async function oauthCallback(ctx: ServiceCtx, params: { code?: string; state?: string; error?: string }) {
  if (params.error) throw new AppError('UNAUTHENTICATED', 'The identity provider refused the sign-in');
  if (!params.state) throw badField('state', 'is required');
  if (!params.code) throw badField('code', 'is required');
  const raw = await ctx.deps.cache.take(`oauth:state:${params.state}`);
  if (!raw) throw new AppError('UNAUTHENTICATED', 'Unknown, used or expired sign-in state; start again');
  const stored = JSON.parse(raw) as OauthState;
  const client = ctx.deps.keycloak!;
  const set = await client.codeGrant(params.code, stored.codeVerifier);
  if (!set.id_token) throw new AppError('UNAUTHENTICATED', 'The identity provider returned no ID token');
  await client.verifyIdToken(set.id_token, stored.nonce);
  const tokens = await signIn(ctx, client, set, 'oauth');
  const frontend = ctx.deps.config.frontendUrl;
  if (!frontend) return { kind: 'tokens' as const, tokens };
  const code = randomToken();
  await ctx.deps.cache.set(`oauth:exchange:${code}`, JSON.stringify(tokens), EXCHANGE_CODE_SECONDS);
  const url = new URL(frontend);
  url.searchParams.set('code', code);
  return { kind: 'redirect' as const, location: url.toString() };
}

export async function oauthExchange(ctx: ServiceCtx, code: string): Promise<TokenResponse> {
  const raw = await ctx.deps.cache.take(`oauth:exchange:${code}`);
  if (!raw) throw new AppError('UNAUTHENTICATED', 'Unknown, used or expired code');
  return JSON.parse(raw) as TokenResponse;
}

