import { createHash, randomBytes } from 'node:crypto';
import { and, eq, isNull, sql } from 'drizzle-orm';
import { refreshTokens } from '../../db/schema/auth.js';
import { users, type UserRow } from '../../db/schema/users.js';
import { AppError, notFound } from '../../lib/errors.js';
import { dummyPasswordHash, verifyPassword } from '../../lib/passwords.js';
import { permissionsOf } from '../../lib/permissions.js';
import type { LoginFailureReason } from '../../lib/audit/actions.js';
import { appendAudit, recordAudit } from '../audit/chain.js';
import { keycloakLogin, keycloakLogout, keycloakRefresh, oauthExchange as keycloakOauthExchange } from './keycloak.js';
import { getOrganization } from '../organizations/service.js';
import { inTransaction, type ActorCtx, type ServiceCtx } from '../service-ctx.js';
import { toOrganizationDto } from '../organizations/schemas.js';
import { toUserDto } from '../users/schemas.js';
import type { LoginInput, RefreshInput, TokenResponse } from './schemas.js';

const INVALID_LOGIN = 'Invalid email or password';
const INVALID_REFRESH = 'Invalid or expired refresh token';

export const hashRefreshToken = (token: string) => createHash('sha256').update(token).digest('hex');

/** Issues an access token and a new refresh token in the given family (a new family on login). */
async function issueTokens(ctx: ServiceCtx, user: UserRow, familyId: string): Promise<TokenResponse> {
  const { config } = ctx.deps;
  const refreshToken = `rt_${randomBytes(32).toString('base64url')}`;
  const now = ctx.clock.now();
  await ctx.db.insert(refreshTokens).values({
    id: ctx.ids.uuid(),
    familyId,
    userId: user.id,
    tokenHash: hashRefreshToken(refreshToken),
    createdAt: now,
    expiresAt: new Date(now.getTime() + config.auth.refreshTokenTtlSeconds * 1000),
  });
  const access = await ctx.deps.tokens.issue({ sub: user.id, org: user.organizationId, jti: ctx.ids.uuid() });
  return {
    access_token: access.token,
    refresh_token: refreshToken,
    token_type: 'Bearer',
    expires_in: access.expiresIn,
    refresh_expires_in: config.auth.refreshTokenTtlSeconds,
    user: toUserDto(user),
  };
}

export async function login(ctx: ServiceCtx, input: LoginInput): Promise<TokenResponse> {
  const { rateLimit } = ctx.deps.config;
  await ctx.deps.rateLimiter.hit([
    { rule: { name: 'login:ip', limit: rateLimit.loginPerIp, windowSeconds: rateLimit.windowSeconds }, key: ctx.ip },
    { rule: { name: 'login:account', limit: rateLimit.loginPerAccount, windowSeconds: rateLimit.windowSeconds }, key: input.email },
  ]);
  if (ctx.deps.keycloak) return keycloakLogin(ctx, input.email, input.password);
  const [user] = await ctx.db.select().from(users).where(sql`lower(${users.email}) = ${input.email}`);
  // Unknown accounts and accounts without a password still pay for a hash check: same answer, similar time.
  const passwordOk = await verifyPassword(input.password, user?.passwordHash ?? (await dummyPasswordHash()));
  const failure: LoginFailureReason | null = !user
    ? 'unknown_email'
    : !user.passwordHash
      ? 'no_password'
      : !passwordOk
        ? 'bad_password'
        : user.status !== 'active'
          ? 'deactivated'
          : null;
  if (failure) {
    ctx.log.info({ event: 'login_failed', reason: failure, user_id: user?.id }, 'login failed');
    await recordAudit(ctx, {
      action: 'login_failed',
      resourceType: 'user',
      resourceId: user?.id ?? null,
      organizationId: user?.organizationId ?? null,
      userId: null,
      details: { reason: failure, email: input.email },
    });
    // Only someone who knows the password learns that the account is deactivated.
    if (failure === 'deactivated') throw new AppError('FORBIDDEN', 'This account is deactivated');
    throw new AppError('UNAUTHENTICATED', INVALID_LOGIN);
  }
  const tokens = await inTransaction(ctx, async (tx) => {
    const familyId = ctx.ids.uuid();
    const issued = await issueTokens(tx, user!, familyId);
    await appendAudit(tx, {
      action: 'login',
      resourceType: 'session',
      resourceId: familyId,
      organizationId: user!.organizationId,
      userId: user!.id,
      details: { family_id: familyId },
    });
    return issued;
  });
  ctx.log.info({ event: 'login', user_id: user!.id }, 'login succeeded');
  return tokens;
}

export async function refresh(ctx: ServiceCtx, input: RefreshInput): Promise<TokenResponse> {
  if (ctx.deps.keycloak) return keycloakRefresh(ctx, input.refresh_token);
  const tokenHash = hashRefreshToken(input.refresh_token);
  const now = ctx.clock.now();
  const outcome = await inTransaction(ctx, async (tx) => {
    const [row] = await tx.db.select().from(refreshTokens).where(eq(refreshTokens.tokenHash, tokenHash)).for('update');
    if (!row || row.revokedAt || row.expiresAt <= now) return { kind: 'invalid' as const };
    if (row.usedAt) {
      // A rotated token came back: someone holds a copy. Revoke the whole family.
      await tx.db
        .update(refreshTokens)
        .set({ revokedAt: now, revokedReason: 'reuse_detected' })
        .where(and(eq(refreshTokens.familyId, row.familyId), isNull(refreshTokens.revokedAt)));
      const [owner] = await tx.db.select({ org: users.organizationId }).from(users).where(eq(users.id, row.userId));
      await appendAudit(tx, {
        action: 'refresh_reuse_detected',
        resourceType: 'session',
        resourceId: row.familyId,
        organizationId: owner?.org ?? null,
        userId: row.userId,
        details: { family_id: row.familyId },
      });
      return { kind: 'reuse' as const, row };
    }
    const [user] = await tx.db.select().from(users).where(eq(users.id, row.userId));
    if (!user || user.status !== 'active') return { kind: 'invalid' as const };
    await tx.db.update(refreshTokens).set({ usedAt: now }).where(eq(refreshTokens.id, row.id));
    const tokens = await issueTokens(tx, user, row.familyId);
    await appendAudit(tx, {
      action: 'token_refresh',
      resourceType: 'session',
      resourceId: row.familyId,
      organizationId: user.organizationId,
      userId: user.id,
      details: { family_id: row.familyId },
    });
    return { kind: 'ok' as const, tokens };
  });
  if (outcome.kind === 'ok') return outcome.tokens;
  if (outcome.kind === 'reuse') {
    ctx.log.warn(
      { event: 'refresh_reuse_detected', user_id: outcome.row.userId, family_id: outcome.row.familyId },
      'refresh token reuse detected; token family revoked',
    );
  }
  throw new AppError('UNAUTHENTICATED', INVALID_REFRESH);
}

export async function logout(ctx: ActorCtx, input: RefreshInput) {
  if (ctx.deps.keycloak) return keycloakLogout(ctx, input.refresh_token);
  await inTransaction(ctx, async (tx) => {
    const [row] = await tx.db
      .select({ familyId: refreshTokens.familyId, userId: refreshTokens.userId })
      .from(refreshTokens)
      .where(eq(refreshTokens.tokenHash, hashRefreshToken(input.refresh_token)));
    const ownFamily = row !== undefined && row.userId === ctx.actor.userId;
    if (ownFamily) {
      await tx.db
        .update(refreshTokens)
        .set({ revokedAt: ctx.clock.now(), revokedReason: 'logout' })
        .where(and(eq(refreshTokens.familyId, row.familyId), isNull(refreshTokens.revokedAt)));
    }
    await appendAudit(tx, {
      action: 'logout',
      resourceType: 'session',
      resourceId: ownFamily ? row.familyId : null,
      organizationId: ctx.actor.organizationId,
      details: { family_revoked: ownFamily },
    });
  });
  await ctx.deps.authenticator.denyToken(ctx.actor.jti, ctx.actor.exp);
  ctx.log.info({ event: 'logout', user_id: ctx.actor.userId }, 'logged out');
  return { logged_out: true as const };
}

export async function me(ctx: ActorCtx) {
  const [user] = await ctx.db.select().from(users).where(eq(users.id, ctx.actor.userId));
  const org = await getOrganization(ctx, ctx.actor.organizationId);
  if (!user || !org) throw notFound('user');
  return {
    user: toUserDto(user),
    organization: toOrganizationDto(org),
    role: user.role,
    permissions: permissionsOf(user.role),
  };
}

export async function oauthExchange(ctx: ServiceCtx, code: string) {
  if (!ctx.deps.keycloak) throw new AppError('NOT_FOUND', 'OAuth sign-in is available only with KEYCLOAK_URL');
  return keycloakOauthExchange(ctx, code);
}
