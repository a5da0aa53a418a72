import type { KeyObject } from 'node:crypto';
import { jwtVerify, SignJWT, type JWK, type JWTPayload } from 'jose';
import { loadEd25519Key } from '../keys/ed25519.js';
import { AppError } from '../../lib/errors.js';
import type { Clock } from '../../lib/clock.js';

export const ACCESS_TOKEN_TYP = 'at+jwt';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const ALG = 'EdDSA';

/** A verified access token, whichever provider issued it. */
export interface VerifiedAccessToken {
  /** sub: our user id for the local issuer, the provider's subject (keycloak_id) for Keycloak. */
  subject: string;
  jti: string;
  exp: number;
  iat: number;
  /** Only the local issuer puts the organisation in its tokens. */
  organizationId?: string;
  /** The longest life the issuer's verifier allows (the local issuer's TTL); none for external providers. */
  maxAgeSeconds?: number;
  claims: JWTPayload;
}

export interface SigningKey {
  privateKey: KeyObject;
  publicKey: KeyObject;
  kid: string;
  publicJwk: JWK;
  origin: string;
}

/** The access-token signing key: JWT_PRIVATE_KEY(_FILE), or generated once under DATA_DIR/keys. */
export async function loadSigningKey(source: { privateKeyPem?: string; privateKeyFile?: string; dataDir: string }): Promise<SigningKey> {
  const key = await loadEd25519Key({
    pem: source.privateKeyPem,
    file: source.privateKeyFile,
    dataDir: source.dataDir,
    fileName: 'jwt-signing-ed25519.pem',
    envName: 'JWT_PRIVATE_KEY',
  });
  const kid = key.thumbprint;
  return { privateKey: key.privateKey, publicKey: key.publicKey, kid, publicJwk: { ...key.publicJwk, kid, alg: ALG, use: 'sig' }, origin: key.origin };
}

export interface LocalIssuerOptions {
  issuer: string;
  audience: string;
  accessTokenTtlSeconds: number;
  clockSkewSeconds: number;
}

/** The embedded identity provider's token half: signs and verifies short-lived access tokens (RFC 9068 shape). */
export class LocalTokenIssuer {
  constructor(
    private readonly key: SigningKey,
    private readonly options: LocalIssuerOptions,
    private readonly clock: Clock,
  ) {}

  get jwks(): { keys: JWK[] } {
    return { keys: [this.key.publicJwk] };
  }

  async issue(claims: { sub: string; org: string; jti: string }): Promise<{ token: string; expiresIn: number }> {
    const now = Math.floor(this.clock.now().getTime() / 1000);
    const token = await new SignJWT({ org: claims.org })
      .setProtectedHeader({ alg: ALG, kid: this.key.kid, typ: ACCESS_TOKEN_TYP })
      .setIssuer(this.options.issuer)
      .setAudience(this.options.audience)
      .setSubject(claims.sub)
      .setJti(claims.jti)
      .setIssuedAt(now)
      .setNotBefore(now)
      .setExpirationTime(now + this.options.accessTokenTtlSeconds)
      .sign(this.key.privateKey);
    return { token, expiresIn: this.options.accessTokenTtlSeconds };
  }

  /** Verifies signature and claims with a pinned algorithm; any failure is the same bland 401. */
  async verify(token: string): Promise<VerifiedAccessToken> {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(
        token,
        (header) => {
          if (header.kid !== this.key.kid) throw new Error('unknown kid');
          return this.key.publicKey;
        },
        {
          algorithms: [ALG],
          issuer: this.options.issuer,
          audience: this.options.audience,
          typ: ACCESS_TOKEN_TYP,
          clockTolerance: this.options.clockSkewSeconds,
          // jose adds clockTolerance to this itself.
          maxTokenAge: this.options.accessTokenTtlSeconds,
          requiredClaims: ['sub', 'jti', 'exp', 'iat'],
          currentDate: this.clock.now(),
        },
      ));
    } catch (cause) {
      throw new AppError('UNAUTHENTICATED', 'Invalid or expired access token', { cause });
    }
    if (typeof payload.org !== 'string' || !UUID.test(payload.org) || typeof payload.sub !== 'string' || !UUID.test(payload.sub) || typeof payload.jti !== 'string') {
      throw new AppError('UNAUTHENTICATED', 'Invalid or expired access token');
    }
    return {
      subject: payload.sub,
      jti: payload.jti,
      exp: payload.exp!,
      iat: payload.iat!,
      organizationId: payload.org,
      maxAgeSeconds: this.options.accessTokenTtlSeconds,
      claims: payload,
    };
  }
}
