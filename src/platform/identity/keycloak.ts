import { createHash, randomBytes } from 'node:crypto';
import { createRemoteJWKSet, errors as joseErrors, jwtVerify, type JWTPayload } from 'jose';
import type { KeycloakConfig } from '../../config.js';
import type { Clock } from '../../lib/clock.js';
import { AppError } from '../../lib/errors.js';
import type { VerifiedAccessToken } from './local-issuer.js';

/** The parts of an OpenID Provider's discovery document we use. */
export interface OidcMetadata {
  issuer: string;
  authorization_endpoint: string;
  token_endpoint: string;
  jwks_uri: string;
  revocation_endpoint?: string;
  end_session_endpoint?: string;
}

/** A token endpoint answer (Keycloak adds refresh_expires_in; other providers may not). */
export interface OidcTokenSet {
  access_token: string;
  refresh_token?: string;
  id_token?: string;
  token_type: string;
  expires_in: number;
  refresh_expires_in?: number;
}

const unavailable = (cause?: unknown) => new AppError('UNAVAILABLE', 'The identity provider is unavailable; try again shortly', { cause });
const invalidToken = (cause?: unknown) => new AppError('UNAUTHENTICATED', 'Invalid or expired access token', { cause });
const DISCOVERY_TTL_MS = 10 * 60 * 1000;

export const s256 = (verifier: string) => createHash('sha256').update(verifier).digest('base64url');
export const randomToken = () => randomBytes(32).toString('base64url');

/**
 * Keycloak — or any compliant OpenID provider — through standard OIDC only: discovery, JWKS, the token
 * endpoint, revocation. Tokens are verified locally with jose against the provider's JWKS (cached, at most one
 * refetch per cooldown however many unknown kids arrive). The Keycloak admin REST API is used for user
 * management with the client's service account.
 */
export class KeycloakClient {
  private metadata?: { value: OidcMetadata; fetchedAt: number };
  private jwks?: ReturnType<typeof createRemoteJWKSet>;
  private serviceToken?: { token: string; expiresAt: number };

  constructor(
    readonly config: KeycloakConfig,
    private readonly clock: Clock,
  ) {}

  private async fetchWithTimeout(url: string, init: RequestInit = {}): Promise<Response> {
    try {
      return await fetch(url, { ...init, redirect: 'manual', signal: AbortSignal.timeout(this.config.timeoutMs) });
    } catch (cause) {
      throw unavailable(cause);
    }
  }

  /** Discovery, cached for 10 minutes; a failure is a 503, never a crash (start-up does not need it). */
  async discovery(): Promise<OidcMetadata> {
    const now = this.clock.now().getTime();
    if (this.metadata && now - this.metadata.fetchedAt < DISCOVERY_TTL_MS) return this.metadata.value;
    const res = await this.fetchWithTimeout(`${this.config.issuerUrl}/.well-known/openid-configuration`);
    if (!res.ok) throw unavailable(new Error(`discovery answered ${res.status}`));
    const value = (await res.json()) as OidcMetadata;
    if (value.issuer !== this.config.issuerUrl) throw unavailable(new Error(`discovery issuer ${value.issuer} is not ${this.config.issuerUrl}`));
    this.metadata = { value, fetchedAt: now };
    this.jwks ??= createRemoteJWKSet(new URL(value.jwks_uri), { cooldownDuration: this.config.jwksCooldownMs, cacheMaxAge: 10 * 60_000, timeoutDuration: this.config.timeoutMs });
    return value;
  }

  /** Readiness asks the provider now (not the discovery cache), with a short timeout. */
  async ready(): Promise<boolean> {
    try {
      const res = await fetch(`${this.config.issuerUrl}/.well-known/openid-configuration`, { signal: AbortSignal.timeout(Math.min(this.config.timeoutMs, 2000)) });
      await res.body?.cancel();
      return res.ok;
    } catch {
      return false;
    }
  }

  private async verify(token: string, audienceCheck: (p: JWTPayload) => boolean, nonce?: string): Promise<JWTPayload> {
    const meta = await this.discovery();
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.jwks!, {
        algorithms: this.config.algorithms,
        issuer: meta.issuer,
        clockTolerance: 30,
        requiredClaims: ['sub', 'exp', 'iat'],
        currentDate: this.clock.now(),
      }));
    } catch (cause) {
      if (cause instanceof joseErrors.JWKSTimeout || (cause instanceof TypeError && /fetch/i.test(String(cause.message)))) throw unavailable(cause);
      throw invalidToken(cause);
    }
    if (!audienceCheck(payload)) throw invalidToken(new Error('audience'));
    if (nonce !== undefined && payload.nonce !== nonce) throw invalidToken(new Error('nonce'));
    return payload;
  }

  /**
   * An access token for this API: aud contains the expected audience or azp is our client (Keycloak's default
   * tokens carry aud "account"), and never an ID or refresh token (Keycloak's typ claim says which).
   */
  async verifyAccessToken(token: string): Promise<VerifiedAccessToken> {
    const payload = await this.verify(token, (p) => {
      const aud = Array.isArray(p.aud) ? p.aud : p.aud ? [p.aud] : [];
      return aud.includes(this.config.audience) || p.azp === this.config.clientId;
    });
    if (payload.typ !== undefined && payload.typ !== 'Bearer') throw invalidToken(new Error(`typ ${String(payload.typ)}`));
    if (typeof payload.sub !== 'string' || payload.sub.length === 0 || payload.sub.length > 255) throw invalidToken();
    return {
      subject: payload.sub,
      jti: typeof payload.jti === 'string' ? payload.jti : createHash('sha256').update(token).digest('hex'),
      exp: payload.exp!,
      iat: payload.iat!,
      claims: payload,
    };
  }

  /** An ID token from the code flow: issued for our client, with the nonce we sent. */
  async verifyIdToken(token: string, nonce: string): Promise<JWTPayload> {
    return this.verify(
      token,
      (p) => (Array.isArray(p.aud) ? p.aud.includes(this.config.clientId) : p.aud === this.config.clientId),
      nonce,
    );
  }

  private async tokenRequest(params: Record<string, string>): Promise<OidcTokenSet> {
    const meta = await this.discovery();
    const res = await this.fetchWithTimeout(meta.token_endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: this.basicAuth() },
      body: new URLSearchParams(params),
    });
    const body = (await res.json().catch(() => ({}))) as Record<string, unknown>;
    if (res.ok) return body as unknown as OidcTokenSet;
    // A rejected client is our misconfiguration, not the user's credentials: report it as unavailable.
    if (res.status >= 500 || body.error === 'invalid_client' || body.error === 'unauthorized_client') {
      throw unavailable(new Error(`token endpoint answered ${res.status} ${String(body.error)}`));
    }
    throw new AppError('UNAUTHENTICATED', 'The identity provider refused the credentials', { cause: new Error(String(body.error)) });
  }

  private basicAuth() {
    const enc = (v: string) => encodeURIComponent(v);
    return `Basic ${Buffer.from(`${enc(this.config.clientId)}:${enc(this.config.clientSecret)}`).toString('base64')}`;
  }

  /** The resource-owner password grant. RFC 9700 §2.4 discourages it; KEYCLOAK_PASSWORD_GRANT=false turns it off. */
  passwordGrant(username: string, password: string) {
    return this.tokenRequest({ grant_type: 'password', username, password, scope: 'openid profile email' });
  }

  refreshGrant(refreshToken: string) {
    return this.tokenRequest({ grant_type: 'refresh_token', refresh_token: refreshToken });
  }

  codeGrant(code: string, codeVerifier: string) {
    return this.tokenRequest({ grant_type: 'authorization_code', code, code_verifier: codeVerifier, redirect_uri: this.config.redirectUri });
  }

  /** RFC 7009 revocation of a refresh token (ends the Keycloak session it belongs to). */
  async revoke(refreshToken: string): Promise<void> {
    const meta = await this.discovery();
    if (!meta.revocation_endpoint) throw unavailable(new Error('the provider has no revocation endpoint'));
    const res = await this.fetchWithTimeout(meta.revocation_endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: this.basicAuth() },
      body: new URLSearchParams({ token: refreshToken, token_type_hint: 'refresh_token' }),
    });
    if (!res.ok) throw unavailable(new Error(`revocation answered ${res.status}`));
  }

  async authorizationUrl(p: { state: string; nonce: string; codeVerifier: string }): Promise<string> {
    const meta = await this.discovery();
    const url = new URL(meta.authorization_endpoint);
    url.search = new URLSearchParams({
      response_type: 'code',
      client_id: this.config.clientId,
      redirect_uri: this.config.redirectUri,
      scope: 'openid profile email',
      state: p.state,
      nonce: p.nonce,
      code_challenge: s256(p.codeVerifier),
      code_challenge_method: 'S256',
    }).toString();
    return url.toString();
  }

  // --- Keycloak admin REST API, with the client's service account ---------------------------------------

  private async adminToken(): Promise<string> {
    const now = this.clock.now().getTime();
    if (this.serviceToken && this.serviceToken.expiresAt - 10_000 > now) return this.serviceToken.token;
    const set = await this.tokenRequest({ grant_type: 'client_credentials' }).catch((err: unknown) => {
      throw err instanceof AppError && err.code === 'UNAUTHENTICATED' ? unavailable(err) : err;
    });
    this.serviceToken = { token: set.access_token, expiresAt: now + set.expires_in * 1000 };
    return set.access_token;
  }

  private async admin(method: string, path: string, body?: unknown): Promise<Response> {
    const res = await this.fetchWithTimeout(`${this.config.url}/admin/realms/${encodeURIComponent(this.config.realm)}${path}`, {
      method,
      headers: { authorization: `Bearer ${await this.adminToken()}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (res.status === 409) throw new AppError('CONFLICT', 'The identity provider already has a user with this email');
    if (!res.ok) throw unavailable(new Error(`admin ${method} ${path} answered ${res.status}`));
    return res;
  }

  /** Creates a user; returns its id (the subject of its tokens). */
  async createUser(user: { email: string; name: string; password?: string }): Promise<string> {
    const [firstName, ...rest] = user.name.split(' ');
    const res = await this.admin('POST', '/users', {
      username: user.email,
      email: user.email,
      firstName,
      lastName: rest.join(' ') || undefined,
      enabled: true,
      emailVerified: false,
      ...(user.password ? { credentials: [{ type: 'password', value: user.password, temporary: false }] } : {}),
    });
    const id = res.headers.get('location')?.split('/').pop();
    if (!id) throw unavailable(new Error('user created without a Location header'));
    return id;
  }

  /** Makes `role` the user's only budapp realm role at the provider (other realm roles are left alone). */
  async setRealmRole(id: string, role: string, previous?: string): Promise<void> {
    const path = `/users/${encodeURIComponent(id)}/role-mappings/realm`;
    if (previous && previous !== role) {
      const old = (await (await this.admin('GET', `/roles/${encodeURIComponent(previous)}`)).json()) as Record<string, unknown>;
      await this.admin('DELETE', path, [old]);
    }
    const rep = (await (await this.admin('GET', `/roles/${encodeURIComponent(role)}`)).json()) as Record<string, unknown>;
    await this.admin('POST', path, [rep]);
  }

  async setUserEnabled(id: string, enabled: boolean): Promise<void> {
    await this.admin('PUT', `/users/${encodeURIComponent(id)}`, { enabled });
  }

  async deleteUser(id: string): Promise<void> {
    await this.admin('DELETE', `/users/${encodeURIComponent(id)}`);
  }
}
