/**
 * A Keycloak stand-in for tests: a real OpenID provider (oidc-provider 9) mounted like a Keycloak realm,
 * plus a fake of the parts of the Keycloak admin REST API budapp uses.
 *
 *   const kc = await startFakeKeycloak();
 *   kc.addUser({ email: 'ada@example.com', password: 'pw', realmRoles: ['admin'], organization: 'Acme' });
 *   // KEYCLOAK_URL=kc.url KEYCLOAK_REALM=kc.realm KEYCLOAK_CLIENT_ID=kc.clientId KEYCLOAK_CLIENT_SECRET=kc.clientSecret
 *   ...
 *   await kc.stop();
 *
 * Where our service can tell, it answers like Keycloak:
 * - Keycloak paths: discovery at /realms/bud/.well-known/openid-configuration, endpoints under
 *   /realms/bud/protocol/openid-connect/{auth,token,certs,userinfo,revoke,logout} (no introspection endpoint).
 * - JWT access tokens (RS256, header typ "JWT") with Keycloak's claims: typ "Bearer", azp, aud [client, "account"],
 *   realm_access.roles (with Keycloak's default roles), resource_access, preferred_username, email, name, organization.
 * - ID tokens carry typ "ID", azp and the nonce; token responses carry refresh_expires_in.
 * - grant_type=password, refresh_token (rotating; reuse of a used refresh token revokes the session),
 *   client_credentials (service account "service-account-<client>" with realm-management roles),
 *   authorization_code with PKCE S256 (required). Bad credentials → 400 invalid_grant "Invalid user credentials".
 *
 * Differences a careful test could notice: refresh tokens are opaque (Keycloak's are HS512 JWTs), the login page is
 * reached through a 303 from the authorization endpoint (Keycloak renders it directly), and the logout endpoint answers
 * with oidc-provider's form (auto-submitted by a browser's JavaScript; a confirmation page without id_token_hint)
 * instead of Keycloak's direct 302 to post_logout_redirect_uri.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  createLocalJWKSet,
  exportJWK,
  generateKeyPair,
  jwtVerify,
  SignJWT,
  UnsecuredJWT,
  type JWK,
  type JWTPayload,
} from 'jose';
import type Provider from 'oidc-provider';
import type {
  Account,
  AccessToken,
  Adapter,
  AdapterPayload,
  ClientCredentials,
  Configuration,
  JWTStructured,
  KoaContextWithOIDC,
  TokenEndpointGrantContext,
} from 'oidc-provider';

// --- public API -----------------------------------------------------------------------------------------------

export interface FakeUser {
  /** Keycloak's user id; also the `sub` of the user's tokens. */
  id: string;
  sub: string;
  /** Lower-case; the key in FakeKeycloak.users. Equal to the e-mail for users made with addUser(). */
  username: string;
  email: string;
  /** Plain text (this is a test double). undefined → the user cannot sign in with a password. */
  password: string | undefined;
  firstName?: string;
  lastName?: string;
  enabled: boolean;
  emailVerified: boolean;
  realmRoles: string[];
  /** Roles of the budapp client (resource_access.<clientId>.roles). */
  clientRoles: string[];
  organization?: string;
  attributes: Record<string, string[]>;
  /** Non-empty (e.g. UPDATE_PASSWORD after a temporary password) → sign-in refused like Keycloak ("Account is not fully set up"). */
  requiredActions: string[];
  createdTimestamp: number;
}

export interface AdminRequest {
  method: string;
  /** Path and query, e.g. /admin/realms/bud/users?email=a%40b.c */
  path: string;
  /** Parsed JSON body, the raw text if it was not JSON, undefined if empty. */
  body: unknown;
  authorization?: string;
}

export interface FakeKeycloak {
  url: string;
  realm: string;
  issuer: string;
  clientId: string;
  clientSecret: string;
  redirectUri: string;
  /** How many requests reached the JWKS endpoint (…/protocol/openid-connect/certs). Resettable. */
  jwksFetches: number;
  adminRequests: AdminRequest[];
  /** By username (lower-case; users made with addUser() have username = e-mail). */
  users: Map<string, FakeUser>;
  /** The id (= sub) of the client's service account (subject of client_credentials tokens). */
  serviceAccountId: string;
  /** Errors thrown inside the provider or the fakes (500 answers); tests may assert it stays empty. */
  serverErrors: unknown[];
  addUser(u: {
    email: string;
    password: string;
    name?: string;
    realmRoles?: string[];
    clientRoles?: string[];
    organization?: string;
    sub?: string;
  }): FakeUser;
  /** A new RS256 key with a new kid signs from now on; older keys stay in the JWKS unless dropOld. */
  rotateSigningKey(opts?: { dropOld?: boolean }): Promise<void>;
  /** Kids currently published, newest (= signing) first. */
  readonly kids: string[];
  stop(): Promise<void>;
  start(): Promise<void>;
  authorize(authUrl: string, user: { email: string; password: string }): Promise<string>;
  signToken(claims: Record<string, unknown>, opts?: { kid?: string; alg?: string }): Promise<string>;
}

// --- constants ------------------------------------------------------------------------------------------------

const REALM = 'bud';
const REALM_PATH = `/realms/${REALM}`;
const OIDC_PATH = '/protocol/openid-connect';
const ROUTES = {
  authorization: `${OIDC_PATH}/auth`,
  token: `${OIDC_PATH}/token`,
  jwks: `${OIDC_PATH}/certs`,
  userinfo: `${OIDC_PATH}/userinfo`,
  revocation: `${OIDC_PATH}/revoke`,
  end_session: `${OIDC_PATH}/logout`,
};
const LOGIN_ACTION_PATH = `${REALM_PATH}/login-actions/authenticate`;
const ADMIN_PATH = `/admin/realms/${REALM}`;
/** The (only) resource server: every access token is a JWT for it. Keycloak ignores resource indicators. */
const API_RESOURCE = 'urn:budapp:api';
const DEFAULT_REALM_ROLES = [`default-roles-${REALM}`, 'offline_access', 'uma_authorization'];
const ACCOUNT_ROLES = ['manage-account', 'manage-account-links', 'view-profile'];
const SERVICE_ACCOUNT_ADMIN_ROLES = ['manage-users', 'view-users', 'query-users'];
/** Keycloak's default client scopes: always granted. */
const DEFAULT_SCOPES = ['profile', 'email'];
const REFRESH_TTL = 1800; // Keycloak's SSO session idle default

// --- oidc-provider loading (quietly) --------------------------------------------------------------------------

type ProviderModule = typeof import('oidc-provider');
let providerModule: Promise<ProviderModule> | undefined;

const isOidcNotice = (args: unknown[]) => typeof args[0] === 'string' && args[0].includes('oidc-provider ');

/** oidc-provider prints "Unsupported runtime" (Node 20) on import and notices on construction; drop only those. */
async function quietly<T>(fn: () => Promise<T> | T): Promise<T> {
  const { warn, info } = console;
  console.warn = (...args: unknown[]) => (isOidcNotice(args) ? undefined : warn.apply(console, args));
  console.info = (...args: unknown[]) => (isOidcNotice(args) ? undefined : info.apply(console, args));
  try {
    return await fn();
  } finally {
    console.warn = warn;
    console.info = info;
  }
}

function loadProvider(): Promise<ProviderModule> {
  providerModule ??= quietly(() => import('oidc-provider'));
  return providerModule;
}

// --- storage shared by every Provider instance of one fake (survives key rotation) -----------------------------

class MemoryStore {
  private items = new Map<string, { payload: AdapterPayload; expiresAt?: number }>();
  private byGrant = new Map<string, Set<string>>();

  private get(key: string): AdapterPayload | undefined {
    const item = this.items.get(key);
    if (!item) return undefined;
    if (item.expiresAt !== undefined && item.expiresAt <= Date.now()) {
      this.items.delete(key);
      return undefined;
    }
    return item.payload;
  }

  /** Grants of an account (for the admin API's user logout). */
  grantIdsOf(accountId: string): string[] {
    const ids: string[] = [];
    for (const [key, item] of this.items) {
      if (key.startsWith('Grant:') && item.payload.accountId === accountId) ids.push(key.slice('Grant:'.length));
    }
    return ids;
  }

  has(model: string, id: string): boolean {
    const p = this.get(`${model}:${id}`);
    return p !== undefined && !p.consumed;
  }

  revokeGrant(grantId: string) {
    for (const key of this.byGrant.get(grantId) ?? []) this.items.delete(key);
    this.byGrant.delete(grantId);
    this.items.delete(`Grant:${grantId}`);
  }

  adapterFor = (name: string): Adapter => {
    const key = (id: string) => `${name}:${id}`;
    return {
      upsert: async (id, payload, expiresIn) => {
        this.items.set(key(id), { payload, expiresAt: expiresIn ? Date.now() + expiresIn * 1000 : undefined });
        if (payload.grantId) {
          const set = this.byGrant.get(payload.grantId) ?? new Set<string>();
          set.add(key(id));
          this.byGrant.set(payload.grantId, set);
        }
      },
      find: async (id) => this.get(key(id)),
      findByUid: async (uid) => {
        for (const [k] of this.items) {
          if (!k.startsWith(`${name}:`)) continue;
          const p = this.get(k);
          if (p?.uid === uid) return p;
        }
        return undefined;
      },
      findByUserCode: async (userCode) => {
        for (const [k] of this.items) {
          if (!k.startsWith(`${name}:`)) continue;
          const p = this.get(k);
          if (p?.userCode === userCode) return p;
        }
        return undefined;
      },
      consume: async (id) => {
        const p = this.get(key(id));
        if (p) p.consumed = Math.floor(Date.now() / 1000);
      },
      destroy: async (id) => {
        this.items.delete(key(id));
      },
      revokeByGrantId: async (grantId) => this.revokeGrant(grantId),
    };
  };
}

// --- helpers --------------------------------------------------------------------------------------------------

interface SigningKey {
  kid: string;
  privateJwk: JWK;
  publicJwk: JWK;
  privateKey: Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
}

async function newSigningKey(): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const kid = randomBytes(24).toString('base64url');
  const common = { kid, alg: 'RS256', use: 'sig' };
  return {
    kid,
    privateKey,
    privateJwk: { ...(await exportJWK(privateKey)), ...common },
    publicJwk: { ...(await exportJWK(publicKey)), ...common },
  };
}

const html = (s: string) =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function send(res: http.ServerResponse, status: number, body?: unknown, headers: Record<string, string> = {}) {
  if (body === undefined) {
    res.writeHead(status, headers).end();
  } else if (typeof body === 'string') {
    res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', ...headers }).end(body);
  } else {
    res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
  }
}

function page(title: string, body: string) {
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${html(title)}</title></head><body>${body}</body></html>`;
}

function loginPage(action: string, error?: string, username = '') {
  return page(
    'Sign in to bud',
    `<h1 id="kc-page-title">Sign in to your account</h1>
${error ? `<span id="input-error" class="kc-feedback-text">${html(error)}</span>` : ''}
<form id="kc-form-login" action="${html(action)}" method="post">
  <input id="username" name="username" type="text" value="${html(username)}" autocomplete="username">
  <input id="password" name="password" type="password" autocomplete="current-password">
  <input type="hidden" id="id-hidden-input" name="credentialId">
  <input name="login" id="kc-login" type="submit" value="Sign In">
</form>`,
  );
}

const splitName = (name?: string) => {
  const trimmed = name?.trim();
  if (!trimmed) return {};
  const [firstName, ...rest] = trimmed.split(/\s+/);
  return { firstName, lastName: rest.join(' ') || undefined };
};

/** Keycloak puts its user-session id in every token as sid; here one grant (sign-in) = one session, uuid-shaped. */
const sidFor = (grantId: string | undefined) => {
  if (!grantId) return undefined;
  const h = createHash('sha256').update(grantId).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
};

const fullName = (u: FakeUser) => [u.firstName, u.lastName].filter(Boolean).join(' ') || undefined;

/** Keycloak's UserRepresentation (the fields a client reads). */
function representation(u: FakeUser) {
  return {
    id: u.id,
    username: u.username,
    email: u.email,
    firstName: u.firstName,
    lastName: u.lastName,
    enabled: u.enabled,
    emailVerified: u.emailVerified,
    createdTimestamp: u.createdTimestamp,
    attributes: Object.keys(u.attributes).length ? u.attributes : undefined,
    requiredActions: u.requiredActions,
    totp: false,
    disableableCredentialTypes: [],
    notBefore: 0,
    access: { manageGroupMembership: true, view: true, mapRoles: true, impersonate: false, manage: true },
  };
}

// --- the fake -------------------------------------------------------------------------------------------------

export async function startFakeKeycloak(opts: { redirectUri?: string; accessTokenTtl?: number } = {}): Promise<FakeKeycloak> {
  const { default: ProviderClass, errors } = await loadProvider();
  const accessTokenTtl = opts.accessTokenTtl ?? 300;
  const redirectUri = opts.redirectUri ?? 'http://127.0.0.1:3000/auth/oauth/callback';
  const clientId = 'budapp';
  const clientSecret = randomBytes(24).toString('base64url');
  const serviceAccountId = randomUUID();
  const cookieKeys = [randomBytes(32).toString('base64url')];
  const store = new MemoryStore();
  const users = new Map<string, FakeUser>();
  const adminRequests: AdminRequest[] = [];
  const serverErrors: unknown[] = [];
  let signingKeys: SigningKey[] = [await newSigningKey()];

  // -- users --
  const userBySub = (sub: string) => [...users.values()].find((u) => u.sub === sub);
  const userByLogin = (login: string | undefined) => {
    const l = login?.trim().toLowerCase();
    if (!l) return undefined;
    return users.get(l) ?? [...users.values()].find((u) => u.email === l);
  };
  /** Keycloak's answer to a sign-in attempt: the user, or the error text. */
  const checkLogin = (login?: string, password?: string): FakeUser | { error: string; form: string } => {
    const u = userByLogin(login);
    if (!u || u.password === undefined || u.password !== password) {
      return { error: 'Invalid user credentials', form: 'Invalid username or password.' };
    }
    if (!u.enabled) return { error: 'Account disabled', form: 'Account is disabled, contact your administrator.' };
    if (u.requiredActions.length) return { error: 'Account is not fully set up', form: 'You need to change your password to activate your account.' };
    return u;
  };

  function createUser(u: {
    username: string;
    email?: string;
    password?: string;
    firstName?: string;
    lastName?: string;
    enabled?: boolean;
    emailVerified?: boolean;
    realmRoles?: string[];
    clientRoles?: string[];
    organization?: string;
    attributes?: Record<string, string[]>;
    requiredActions?: string[];
    sub?: string;
  }): FakeUser {
    const username = u.username.trim().toLowerCase();
    const id = u.sub ?? randomUUID();
    const user: FakeUser = {
      id,
      sub: id,
      username,
      email: (u.email ?? '').trim().toLowerCase(),
      password: u.password,
      firstName: u.firstName,
      lastName: u.lastName,
      enabled: u.enabled ?? true,
      emailVerified: u.emailVerified ?? false,
      realmRoles: [...(u.realmRoles ?? [])],
      clientRoles: [...(u.clientRoles ?? [])],
      organization: u.organization ?? u.attributes?.organization?.[0],
      attributes: { ...(u.attributes ?? {}) },
      requiredActions: [...(u.requiredActions ?? [])],
      createdTimestamp: Date.now(),
    };
    users.set(username, user);
    return user;
  }

  // -- token shaping --
  const origin = new URL(redirectUri).origin;

  function userClaims(u: FakeUser) {
    return {
      sub: u.sub,
      email: u.email || undefined,
      email_verified: u.emailVerified,
      name: fullName(u),
      given_name: u.firstName,
      family_name: u.lastName,
      preferred_username: u.username,
    };
  }

  function account(u: FakeUser): Account {
    return { accountId: u.sub, claims: () => userClaims(u) };
  }

  async function grantedScope(ctx: KoaContextWithOIDC, grantId: string | undefined) {
    const grant = grantId ? await ctx.oidc.provider.Grant.find(grantId) : undefined;
    const scopes = new Set((grant?.getOIDCScope() ?? '').split(' ').filter(Boolean));
    for (const s of DEFAULT_SCOPES) scopes.add(s);
    scopes.delete('offline_access');
    return [...scopes].sort((a, b) => (a === 'openid' ? -1 : b === 'openid' ? 1 : a.localeCompare(b))).join(' ');
  }

  /** sid → grant: JWT access tokens are not stored, so userinfo finds the session ("is it still alive?") this way. */
  const sessions = new Map<string, string>();
  const sessionOf = (grantId: string | undefined) => {
    const sid = sidFor(grantId);
    if (sid) sessions.set(sid, grantId!);
    return sid;
  };

  /** Rewrites oidc-provider's JWT access-token claims into Keycloak's shape. */
  async function keycloakShape(ctx: KoaContextWithOIDC, token: AccessToken | ClientCredentials, parts: JWTStructured) {
    parts.header = { ...parts.header, typ: 'JWT' };
    const p = parts.payload;
    const base = { exp: p.exp, iat: p.iat, jti: p.jti, iss: p.iss, sub: p.sub };
    for (const k of Object.keys(p)) delete p[k];
    const accountId = 'accountId' in token ? token.accountId : undefined;
    if (accountId) {
      const u = userBySub(accountId);
      const resourceAccess: Record<string, { roles: string[] }> = {};
      if (u?.clientRoles.length) resourceAccess[clientId] = { roles: [...u.clientRoles] };
      resourceAccess.account = { roles: ACCOUNT_ROLES };
      Object.assign(p, base, {
        aud: [clientId, 'account'],
        typ: 'Bearer',
        azp: clientId,
        sid: sessionOf('grantId' in token ? token.grantId : undefined),
        acr: '1',
        'allowed-origins': [origin],
        realm_access: { roles: [...DEFAULT_REALM_ROLES, ...(u?.realmRoles ?? [])] },
        resource_access: resourceAccess,
        scope: await grantedScope(ctx, 'grantId' in token ? token.grantId : undefined),
        ...(u ? { ...userClaims(u), sub: u.sub } : {}),
        organization: u?.organization,
      });
    } else {
      Object.assign(p, base, {
        aud: ['realm-management', clientId, 'account'],
        sub: serviceAccountId,
        typ: 'Bearer',
        azp: clientId,
        acr: '1',
        'allowed-origins': [origin],
        realm_access: { roles: [...DEFAULT_REALM_ROLES] },
        resource_access: { 'realm-management': { roles: SERVICE_ACCOUNT_ADMIN_ROLES }, account: { roles: ACCOUNT_ROLES } },
        scope: DEFAULT_SCOPES.join(' '),
        email_verified: false,
        clientHost: '127.0.0.1',
        preferred_username: `service-account-${clientId}`,
        clientAddress: '127.0.0.1',
        client_id: clientId,
      });
    }
    for (const k of Object.keys(p)) if (p[k] === undefined) delete p[k];
  }

  const resourceServerInfo = () => ({
    scope: '',
    audience: clientId,
    accessTokenFormat: 'jwt' as const,
    accessTokenTTL: accessTokenTtl,
    jwt: { sign: { alg: 'RS256' as const } },
  });

  // -- the provider (rebuilt with a new key set on rotation; storage, cookies keys and users are shared) --
  let server: http.Server;
  let port = 0;
  let provider: Provider;
  let callback: ReturnType<Provider['callback']>;

  const issuer = () => `http://127.0.0.1:${port}${REALM_PATH}`;

  async function passwordGrant(ctx: TokenEndpointGrantContext<{ username?: string; password?: string }>) {
    const { client, params } = ctx.oidc;
    const { provider: p } = ctx.oidc;
    if (!params.username) throw new errors.InvalidRequest('Missing parameter: username');
    const checked = checkLogin(params.username, params.password);
    if (!('sub' in checked)) throw new errors.CustomOIDCProviderError('invalid_grant', checked.error);
    const user = checked;

    const requested = (params.scope ?? '').split(' ').filter(Boolean);
    const scope = [...new Set([...requested, ...DEFAULT_SCOPES])].join(' ');
    const grant = new p.Grant({ accountId: user.sub, clientId: client.clientId });
    grant.addOIDCScope(scope);
    grant.addResourceScope(API_RESOURCE, resourceServerInfo().scope);
    const grantId = await grant.save();
    const acct = account(user);
    ctx.oidc.entity('Account', acct);
    ctx.oidc.entity('Grant', grant);

    const at = new p.AccessToken({ accountId: user.sub, client, grantId, gty: 'password' });
    at.resourceServer = new p.ResourceServer(API_RESOURCE, resourceServerInfo());
    ctx.oidc.entity('AccessToken', at);
    const accessToken = await at.save();

    const rt = new p.RefreshToken({
      accountId: user.sub,
      client,
      grantId,
      gty: 'password',
      scope,
      resource: API_RESOURCE,
      rotations: 0,
      iiat: Math.floor(Date.now() / 1000),
    } as ConstructorParameters<typeof p.RefreshToken>[0]);
    ctx.oidc.entity('RefreshToken', rt);
    const refreshToken = await rt.save();

    let idToken: string | undefined;
    if (requested.includes('openid')) {
      const it = new p.IdToken({ ...(await acct.claims('id_token', scope, {}, [])) }, { ctx });
      (it as unknown as { scope: string }).scope = scope;
      idToken = await it.issue({ use: 'idtoken' });
    }

    ctx.body = {
      access_token: accessToken,
      expires_in: at.expiration,
      refresh_expires_in: REFRESH_TTL,
      refresh_token: refreshToken,
      token_type: 'Bearer',
      ...(idToken ? { id_token: idToken } : {}),
      'not-before-policy': 0,
      scope: scope.split(' ').filter((s) => s !== 'offline_access').join(' '),
    };
  }

  function buildProvider() {
    const configuration: Configuration = {
      adapter: store.adapterFor,
      clients: [
        {
          client_id: clientId,
          client_secret: clientSecret,
          redirect_uris: [redirectUri],
          post_logout_redirect_uris: [redirectUri, `${origin}/`],
          grant_types: ['authorization_code', 'refresh_token', 'client_credentials', 'password'],
          response_types: ['code'],
          token_endpoint_auth_method: 'client_secret_basic',
          id_token_signed_response_alg: 'RS256',
        },
      ],
      jwks: { keys: signingKeys.map((k) => k.privateJwk) as never },
      cookies: { keys: cookieKeys },
      routes: ROUTES,
      claims: {
        openid: ['sub'],
        email: ['email', 'email_verified'],
        profile: ['name', 'given_name', 'family_name', 'preferred_username'],
      },
      scopes: ['openid', 'offline_access', 'roles', 'web-origins', 'acr', 'basic', 'organization'],
      conformIdTokenClaims: false,
      pkce: { required: () => true },
      rotateRefreshToken: true,
      issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
      findAccount: (_ctx, sub) => {
        const u = userBySub(sub);
        return u?.enabled ? account(u) : undefined;
      },
      // Keycloak asks no consent from a confidential first-party client: every request is granted as asked.
      loadExistingGrant: async (ctx) => {
        const { Grant } = ctx.oidc.provider;
        const client = ctx.oidc.client!;
        const session = ctx.oidc.session!;
        const grantId = ctx.oidc.result?.consent?.grantId || session.grantIdFor(client.clientId);
        const grant = (grantId ? await Grant.find(grantId) : undefined) ?? new Grant({ clientId: client.clientId, accountId: session.accountId });
        grant.addOIDCScope([...new Set([...ctx.oidc.requestParamScopes, ...DEFAULT_SCOPES])].join(' '));
        if (ctx.oidc.requestParamClaims?.size) grant.addOIDCClaims([...ctx.oidc.requestParamClaims]);
        for (const [indicator, rs] of Object.entries(ctx.oidc.resourceServers ?? {})) grant.addResourceScope(indicator, rs.scope);
        await grant.save();
        return grant;
      },
      interactions: {
        url: (_ctx, interaction) => `${LOGIN_ACTION_PATH}?client_id=${encodeURIComponent(clientId)}&tab_id=${interaction.uid}`,
      },
      features: {
        devInteractions: { enabled: false },
        clientCredentials: { enabled: true },
        revocation: { enabled: true, allowedPolicy: async (_ctx, client, token) => token.clientId === client.clientId },
        userinfo: { enabled: true },
        rpInitiatedLogout: {
          enabled: true,
          logoutSource: async (ctx, form) => {
            ctx.body = page('Logging out', `<h1>Do you want to log out?</h1>${form}<button type="submit" form="op.logoutForm" value="yes" name="logout">Logout</button>`);
          },
          postLogoutSuccessSource: async (ctx) => {
            ctx.body = page('You are logged out', '<h1 id="kc-page-title">You are logged out</h1>');
          },
        },
        resourceIndicators: {
          enabled: true,
          defaultResource: async (_ctx, _client, oneOf) => oneOf ?? API_RESOURCE,
          useGrantedResource: async () => true,
          getResourceServerInfo: async () => resourceServerInfo(),
        },
      },
      formats: { customizers: { jwt: keycloakShape } },
      ttl: {
        AccessToken: accessTokenTtl,
        ClientCredentials: accessTokenTtl,
        IdToken: accessTokenTtl,
        AuthorizationCode: 60,
        RefreshToken: REFRESH_TTL,
        Grant: 36_000,
        Interaction: 1800,
        Session: 36_000,
        DeviceCode: 600,
        BackchannelAuthenticationRequest: 600,
        PreAuthorizedCode: 600,
      },
      clientBasedCORS: (_ctx, reqOrigin) => reqOrigin === origin,
      renderError: async (ctx, out) => {
        ctx.type = 'html';
        ctx.body = page('Error', `<h1 id="kc-page-title">We are sorry...</h1><p id="kc-error-message">${html(out.error)}: ${html(String(out.error_description ?? ''))}</p>`);
      },
    };

    const p = new ProviderClass(issuer(), configuration);
    p.registerGrantType('password', passwordGrant, ['username', 'password', 'scope']);

    // Keycloak's ID tokens say typ "ID" and azp.
    const { IdToken } = p;
    const issue = IdToken.prototype.issue;
    IdToken.prototype.issue = function (this: InstanceType<typeof IdToken>, context) {
      if (context.use === 'idtoken') {
        this.set('typ', 'ID');
        this.set('azp', this.client.clientId);
        this.set('sid', sessionOf(this.ctx?.oidc.entities.Grant?.jti));
      }
      return issue.call(this, context);
    };

    // Keycloak's token responses carry refresh_expires_in.
    p.use(async (ctx, next) => {
      await next();
      const body: unknown = ctx.body;
      if (ctx.path === ROUTES.token && ctx.status === 200 && body && typeof body === 'object' && 'refresh_token' in body) {
        Object.assign(body, { refresh_expires_in: REFRESH_TTL, 'not-before-policy': 0 });
      }
    });
    p.on('server_error', (_ctx: unknown, err: unknown) => serverErrors.push(err));
    (p as unknown as NodeJS.EventEmitter).on('error', (err: unknown) => serverErrors.push(err));
    provider = p;
    callback = p.callback();
  }

  // -- interactions: Keycloak's login form, checked against the fake users --
  async function loginAction(req: http.IncomingMessage, res: http.ServerResponse, url: URL) {
    let details;
    try {
      details = await provider.interactionDetails(req, res);
    } catch {
      return send(res, 400, page('Error', '<p id="kc-error-message">Cookie not found. Please make sure cookies are enabled in your browser.</p>'));
    }
    const action = url.pathname + url.search;
    if (details.prompt.name !== 'login') {
      // Not reached with loadExistingGrant above; kept so an unexpected consent prompt cannot hang a flow.
      const grant = new provider.Grant({ clientId, accountId: details.session?.accountId });
      grant.addOIDCScope(String(details.params.scope ?? 'openid'));
      grant.addResourceScope(API_RESOURCE, '');
      return provider.interactionFinished(req, res, { consent: { grantId: await grant.save() } }, { mergeWithLastSubmission: true });
    }
    if (req.method === 'GET') return send(res, 200, loginPage(action));
    if (req.method !== 'POST') return send(res, 405, page('Error', 'Method not allowed'));
    const form = new URLSearchParams(await readBody(req));
    const checked = checkLogin(form.get('username') ?? undefined, form.get('password') ?? undefined);
    if (!('sub' in checked)) return send(res, 200, loginPage(action, checked.form, form.get('username') ?? ''));
    await provider.interactionFinished(
      req,
      res,
      { login: { accountId: checked.sub, acr: '1', amr: ['pwd'], remember: true } },
      { mergeWithLastSubmission: false },
    );
  }

  // -- userinfo (Keycloak accepts its own access tokens there; oidc-provider would refuse JWTs for a resource) --
  async function userinfo(req: http.IncomingMessage, res: http.ServerResponse) {
    const auth = req.headers.authorization;
    let token = auth?.toLowerCase().startsWith('bearer ') ? auth.slice(7).trim() : undefined;
    if (!token && req.method === 'POST') token = new URLSearchParams(await readBody(req)).get('access_token') ?? undefined;
    const fail = () => send(res, 401, { error: 'invalid_token', error_description: 'Token verification failed' }, { 'www-authenticate': 'Bearer realm="bud", error="invalid_token"' });
    if (!token) return fail();
    const payload = await verifyOwnToken(token);
    const u = payload?.sub ? userBySub(payload.sub) : undefined;
    const grantId = typeof payload?.sid === 'string' ? sessions.get(payload.sid) : undefined;
    if (!payload || !u || !u.enabled || payload.typ !== 'Bearer' || !grantId || !store.has('Grant', grantId)) return fail();
    const c = userClaims(u);
    send(res, 200, Object.fromEntries(Object.entries({ ...c, organization: u.organization }).filter(([, v]) => v !== undefined)));
  }

  async function verifyOwnToken(token: string): Promise<JWTPayload | undefined> {
    try {
      const { payload } = await jwtVerify(token, createLocalJWKSet({ keys: signingKeys.map((k) => k.publicJwk) }), { issuer: issuer() });
      return payload;
    } catch {
      return undefined;
    }
  }

  // -- admin REST API fake --
  async function admin(req: http.IncomingMessage, res: http.ServerResponse, url: URL) {
    const raw = await readBody(req);
    let body: unknown;
    if (raw.length) {
      try {
        body = JSON.parse(raw);
      } catch {
        body = raw;
      }
    }
    const method = req.method ?? 'GET';
    adminRequests.push({ method, path: url.pathname + url.search, body, ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}) });

    const auth = req.headers.authorization;
    const claims = auth?.startsWith('Bearer ') ? await verifyOwnToken(auth.slice(7)) : undefined;
    if (!claims) return send(res, 401, { error: 'HTTP 401 Unauthorized' });
    const roles = (claims.resource_access as Record<string, { roles?: string[] }> | undefined)?.['realm-management']?.roles ?? [];
    const canWrite = roles.includes('manage-users');
    const canRead = canWrite || roles.includes('view-users') || roles.includes('query-users');
    if (!(method === 'GET' ? canRead : canWrite)) return send(res, 403, { error: 'HTTP 403 Forbidden' });

    const rest = url.pathname.slice(ADMIN_PATH.length).split('/').filter(Boolean).map(decodeURIComponent);
    const b = (body && typeof body === 'object' ? body : {}) as Record<string, unknown>;
    const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
    const strList = (v: unknown) => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : undefined);
    const notFound = () => send(res, 404, { error: 'User not found' });

    if (rest[0] === 'roles' && rest[1] && method === 'GET') {
      return send(res, 200, { id: `role-${rest[1]}`, name: rest[1], composite: false, clientRole: false, containerId: REALM });
    }
    if (rest[0] !== 'users') return send(res, 404, { error: 'RESTEASY003210: Could not find resource for full path' });

    // /users
    if (rest.length === 1) {
      if (method === 'POST') {
        const username = (str(b.username) ?? str(b.email))?.trim().toLowerCase();
        if (!username) return send(res, 400, { errorMessage: 'User name is missing' });
        if (users.has(username)) return send(res, 409, { errorMessage: 'User exists with same username' });
        const email = str(b.email)?.trim().toLowerCase();
        if (email && [...users.values()].some((u) => u.email === email)) return send(res, 409, { errorMessage: 'User exists with same email' });
        const cred = Array.isArray(b.credentials) ? (b.credentials[0] as Record<string, unknown> | undefined) : undefined;
        const attributes = b.attributes && typeof b.attributes === 'object' ? (b.attributes as Record<string, string[]>) : undefined;
        const requiredActions = [...(strList(b.requiredActions) ?? [])];
        if (cred?.temporary === true) requiredActions.push('UPDATE_PASSWORD');
        const u = createUser({
          username,
          email,
          password: str(cred?.value),
          firstName: str(b.firstName),
          lastName: str(b.lastName),
          enabled: b.enabled === true, // Keycloak creates disabled users unless enabled: true
          emailVerified: b.emailVerified === true,
          attributes,
          requiredActions,
        });
        return send(res, 201, undefined, { location: `${fake.url}${ADMIN_PATH}/users/${u.id}` });
      }
      if (method === 'GET') {
        const exact = url.searchParams.get('exact') === 'true';
        const match = (value: string, q: string | null) => q === null || (exact ? value === q.toLowerCase() : value.includes(q.toLowerCase()));
        const search = url.searchParams.get('search');
        let list = [...users.values()].filter(
          (u) =>
            match(u.email, url.searchParams.get('email')) &&
            match(u.username, url.searchParams.get('username')) &&
            (search === null || [u.username, u.email, u.firstName ?? '', u.lastName ?? ''].some((v) => v.toLowerCase().includes(search.toLowerCase()))),
        );
        const first = Number(url.searchParams.get('first') ?? 0);
        const max = Number(url.searchParams.get('max') ?? 100);
        list = list.slice(first, first + max);
        return send(res, 200, list.map(representation));
      }
      return send(res, 405, { error: 'HTTP 405 Method Not Allowed' });
    }

    const user = [...users.values()].find((u) => u.id === rest[1]);
    if (!user) return notFound();

    if (rest.length === 2) {
      if (method === 'GET') return send(res, 200, representation(user));
      if (method === 'DELETE') {
        users.delete(user.username);
        for (const g of store.grantIdsOf(user.sub)) store.revokeGrant(g);
        return send(res, 204);
      }
      if (method === 'PUT') {
        if (typeof b.enabled === 'boolean') user.enabled = b.enabled;
        if (typeof b.emailVerified === 'boolean') user.emailVerified = b.emailVerified;
        if (str(b.email) !== undefined) user.email = str(b.email)!.trim().toLowerCase();
        if (str(b.firstName) !== undefined) user.firstName = str(b.firstName);
        if (str(b.lastName) !== undefined) user.lastName = str(b.lastName);
        if (b.attributes && typeof b.attributes === 'object') {
          user.attributes = b.attributes as Record<string, string[]>;
          if (user.attributes.organization?.[0]) user.organization = user.attributes.organization[0];
        }
        if (strList(b.requiredActions)) user.requiredActions = strList(b.requiredActions)!;
        return send(res, 204);
      }
      return send(res, 405, { error: 'HTTP 405 Method Not Allowed' });
    }

    const sub = rest.slice(2).join('/');
    if (sub === 'reset-password' && (method === 'PUT' || method === 'POST')) {
      if (!str(b.value)) return send(res, 400, { error: 'invalidPasswordMinLengthMessage', error_description: 'Invalid password' });
      user.password = str(b.value);
      user.requiredActions = user.requiredActions.filter((a) => a !== 'UPDATE_PASSWORD');
      if (b.temporary !== false) user.requiredActions.push('UPDATE_PASSWORD'); // Keycloak's default is temporary: true
      return send(res, 204);
    }
    if ((sub === 'execute-actions-email' || sub === 'send-verify-email') && method === 'PUT') return send(res, 204);
    if (sub === 'logout' && method === 'POST') {
      for (const g of store.grantIdsOf(user.sub)) store.revokeGrant(g);
      return send(res, 204);
    }
    if (sub === 'role-mappings/realm') {
      const names = Array.isArray(body) ? body.map((r) => str((r as Record<string, unknown>)?.name)).filter((n): n is string => !!n) : [];
      if (method === 'GET') return send(res, 200, user.realmRoles.map((name) => ({ id: `role-${name}`, name })));
      if (method === 'POST') {
        user.realmRoles = [...new Set([...user.realmRoles, ...names])];
        return send(res, 204);
      }
      if (method === 'DELETE') {
        user.realmRoles = user.realmRoles.filter((r) => !names.includes(r));
        return send(res, 204);
      }
    }
    return send(res, 404, { error: 'RESTEASY003210: Could not find resource for full path' });
  }

  // -- HTTP --
  async function handle(req: http.IncomingMessage, res: http.ServerResponse) {
    const url = new URL(req.url ?? '/', `http://127.0.0.1:${port}`);
    try {
      if (url.pathname === `${REALM_PATH}${ROUTES.jwks}`) fake.jwksFetches++;
      if (url.pathname.startsWith(`${ADMIN_PATH}/`)) return await admin(req, res, url);
      if (url.pathname === LOGIN_ACTION_PATH) return await loginAction(req, res, url);
      if (url.pathname === `${REALM_PATH}${ROUTES.userinfo}`) return await userinfo(req, res);
      if (url.pathname === REALM_PATH || url.pathname.startsWith(`${REALM_PATH}/`)) {
        // Keycloak always grants its default client scopes (profile, email) — make the code flow ask for them.
        if (url.pathname === `${REALM_PATH}${ROUTES.authorization}` && url.searchParams.has('scope')) {
          const scope = new Set(url.searchParams.get('scope')!.split(' ').filter(Boolean));
          for (const s of DEFAULT_SCOPES) scope.add(s);
          url.searchParams.set('scope', [...scope].join(' '));
        }
        const mounted = url.pathname.slice(REALM_PATH.length) + url.search;
        (req as http.IncomingMessage & { originalUrl?: string }).originalUrl = `${REALM_PATH}${mounted}`;
        req.url = mounted.startsWith('/') ? mounted : `/${mounted}`;
        return await callback(req, res);
      }
      send(res, 404, { error: 'Unable to find matching target resource method' });
    } catch (err) {
      serverErrors.push(err);
      if (!res.headersSent) send(res, 500, { error: 'unknown_error' });
      else res.end();
    }
  }

  server = http.createServer((req, res) => void handle(req, res));
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  port = (server.address() as AddressInfo).port;
  await quietly(buildProvider);

  const fake: FakeKeycloak = {
    url: `http://127.0.0.1:${port}`,
    realm: REALM,
    issuer: issuer(),
    clientId,
    clientSecret,
    redirectUri,
    jwksFetches: 0,
    adminRequests,
    users,
    serviceAccountId,
    serverErrors,

    addUser(u) {
      const username = u.email.trim().toLowerCase();
      if (users.has(username)) throw new Error(`fake keycloak: user ${username} exists`);
      return createUser({
        username,
        email: u.email,
        password: u.password,
        ...splitName(u.name),
        enabled: true,
        emailVerified: true,
        realmRoles: u.realmRoles,
        clientRoles: u.clientRoles,
        organization: u.organization,
        sub: u.sub,
      });
    },

    get kids() {
      return signingKeys.map((k) => k.kid);
    },

    async rotateSigningKey({ dropOld = false } = {}) {
      const key = await newSigningKey();
      signingKeys = dropOld ? [key] : [key, ...signingKeys];
      await quietly(buildProvider);
    },

    async stop() {
      if (!server.listening) return;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },

    async start() {
      if (server.listening) return;
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, '127.0.0.1', () => {
          server.off('error', reject);
          resolve();
        });
      });
    },

    async authorize(authUrl, user) {
      const jar = new Map<string, string>();
      const cookieHeader = () => [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
      const remember = (res: Response) => {
        for (const line of res.headers.getSetCookie()) {
          const [pair = '', ...attrs] = line.split(';');
          const eq = pair.indexOf('=');
          const name = pair.slice(0, eq).trim();
          const value = pair.slice(eq + 1).trim();
          const expired = attrs.some((a) => {
            const [k = '', v = ''] = a.split('=').map((s) => s.trim());
            return (k.toLowerCase() === 'max-age' && Number(v) <= 0) || (k.toLowerCase() === 'expires' && Date.parse(v) <= Date.now());
          });
          if (expired || value === '') jar.delete(name);
          else jar.set(name, value);
        }
      };
      const target = new URL(redirectUri);
      const isCallback = (u: URL) => u.origin === target.origin && u.pathname === target.pathname;

      let next: { url: URL; init?: RequestInit } = { url: new URL(authUrl) };
      let loggedIn = false;
      for (let hop = 0; hop < 20; hop++) {
        const res = await fetch(next.url, {
          ...next.init,
          redirect: 'manual',
          headers: { ...(next.init?.headers as Record<string, string> | undefined), cookie: cookieHeader() },
        });
        remember(res);
        const location = res.headers.get('location');
        if (res.status >= 300 && res.status < 400 && location) {
          await res.body?.cancel();
          const to = new URL(location, next.url);
          if (isCallback(to)) return to.href;
          next = { url: to };
          continue;
        }
        const text = await res.text();
        const form = /<form[^>]*id="kc-form-login"[^>]*action="([^"]+)"/.exec(text);
        if (res.status === 200 && form?.[1]) {
          if (loggedIn) {
            const why = /id="input-error"[^>]*>([^<]*)</.exec(text)?.[1] ?? 'login form shown again';
            throw new Error(`fake keycloak authorize: sign-in failed: ${why}`);
          }
          loggedIn = true;
          next = {
            url: new URL(form[1].replace(/&amp;/g, '&'), next.url),
            init: {
              method: 'POST',
              headers: { 'content-type': 'application/x-www-form-urlencoded' },
              body: new URLSearchParams({ username: user.email, password: user.password, credentialId: '' }).toString(),
            },
          };
          continue;
        }
        throw new Error(`fake keycloak authorize: unexpected ${res.status} at ${next.url.pathname}: ${text.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').trim().slice(0, 300)}`);
      }
      throw new Error('fake keycloak authorize: too many redirects');
    },

    async signToken(claims, o = {}) {
      const alg = o.alg ?? 'RS256';
      const current = signingKeys[0]!;
      if (alg === 'none') return new UnsecuredJWT(claims).encode();
      const header = { alg, typ: 'JWT', kid: o.kid ?? current.kid };
      if (alg.startsWith('HS')) return new SignJWT(claims).setProtectedHeader(header).sign(new TextEncoder().encode(clientSecret));
      if (!/^(RS|PS)(256|384|512)$/.test(alg)) throw new Error(`fake keycloak signToken: unsupported alg ${alg} (the realm key is RSA)`);
      return new SignJWT(claims).setProtectedHeader(header).sign(current.privateKey);
    },
  };
  return fake;
}
