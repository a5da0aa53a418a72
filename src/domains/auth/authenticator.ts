import { eq } from 'drizzle-orm';
import type { Config } from '../../config.js';
import type { Db } from '../../db/client.js';
import { users, type Role, type UserStatus } from '../../db/schema/users.js';
import type { Clock } from '../../lib/clock.js';
import { AppError } from '../../lib/errors.js';
import type { Cache } from '../../platform/cache/cache.js';
import type { VerifiedAccessToken } from '../../platform/identity/local-issuer.js';

/** How an identity provider plugs in: verify a token, then map its subject to one of our users. */
export interface TokenVerifier {
  verify(token: string): Promise<VerifiedAccessToken>;
  /** Our user id for a verified token (provisioning the user just in time where the provider allows it). */
  resolveUser(token: VerifiedAccessToken): Promise<string | undefined>;
}

export interface Principal {
  userId: string;
  organizationId: string;
  role: Role;
  jti: string;
  /** Access token expiry, seconds since the epoch. */
  exp: number;
}

export interface Authenticator {
  /** Resolves an Authorization header to the current principal, or throws a bland 401. */
  authenticate(authorization: string | undefined): Promise<Principal>;
  /** Drops cached state for a user so a role change or deactivation takes effect on the next request. */
  forgetUser(userId: string): Promise<void>;
  /** Refuses an access token from now until it would have expired anyway. */
  denyToken(jti: string, exp: number): Promise<void>;
}

const unauthenticated = () => new AppError('UNAUTHENTICATED', 'Invalid or expired access token');
const USER_STATE_TTL_SECONDS = 300;
const VERIFIED_TOKEN_CACHE_SIZE = 10_000;

/**
 * Verifying a signature costs more than the rest of a small read, so verified claims are kept until the
 * token expires. That cache only remembers that a signature was valid: the denylist (logout) and the
 * user's current state (role, deactivation) are looked up on every request, so both take effect at once.
 */
export function createAuthenticator(deps: { config: Config; db: Db; clock: Clock; cache: Cache; verifier: TokenVerifier }): Authenticator {
  const verified = new Map<string, VerifiedAccessToken>();
  const { clockSkewSeconds: skew } = deps.config.auth;

  async function claimsOf(token: string): Promise<VerifiedAccessToken> {
    const now = deps.clock.now().getTime() / 1000;
    const hit = verified.get(token);
    if (hit) {
      // The same time checks verify() made, applied to the clock of this request.
      if (hit.exp + skew > now && (hit.maxAgeSeconds === undefined || now - hit.iat <= hit.maxAgeSeconds + skew)) return hit;
      verified.delete(token);
      throw unauthenticated();
    }
    const claims = await deps.verifier.verify(token);
    if (verified.size >= VERIFIED_TOKEN_CACHE_SIZE) verified.delete(verified.keys().next().value!);
    verified.set(token, claims);
    return claims;
  }

  async function userState(userId: string): Promise<{ org: string; role: Role; status: UserStatus } | undefined> {
    const key = `user:${userId}`;
    const cached = await deps.cache.get(key);
    if (cached) {
      const [org, role, status] = cached.split('|') as [string, Role, UserStatus];
      return { org, role, status };
    }
    const [row] = await deps.db
      .select({ org: users.organizationId, role: users.role, status: users.status })
      .from(users)
      .where(eq(users.id, userId));
    if (!row) return undefined;
    await deps.cache.set(key, `${row.org}|${row.role}|${row.status}`, USER_STATE_TTL_SECONDS);
    return row;
  }

  return {
    async authenticate(authorization) {
      const match = authorization?.trim().match(/^bearer\s+(\S+)$/i);
      if (!match) throw new AppError('UNAUTHENTICATED', 'Missing bearer token');
      const token = await claimsOf(match[1]!);
      if (await deps.cache.get(`deny:${token.jti}`)) throw unauthenticated();
      const userId = await deps.verifier.resolveUser(token);
      const state = userId ? await userState(userId) : undefined;
      if (!userId || !state || state.status !== 'active') throw unauthenticated();
      if (token.organizationId !== undefined && state.org !== token.organizationId) throw unauthenticated();
      return { userId, organizationId: state.org, role: state.role, jti: token.jti, exp: token.exp };
    },
    async forgetUser(userId) {
      await deps.cache.delete(`user:${userId}`);
    },
    async denyToken(jti, exp) {
      const ttl = Math.ceil(exp + skew - deps.clock.now().getTime() / 1000);
      if (ttl > 0) await deps.cache.set(`deny:${jti}`, '1', ttl);
    },
  };
}
