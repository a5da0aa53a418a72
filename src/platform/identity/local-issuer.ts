import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { calculateJwkThumbprint, exportJWK, jwtVerify, SignJWT, type JWK, type JWTPayload } from 'jose';
import { AppError } from '../../lib/errors.js';
import type { Clock } from '../../lib/clock.js';

export const ACCESS_TOKEN_TYP = 'at+jwt';
const ALG = 'EdDSA';

export interface AccessClaims {
  sub: string;
  jti: string;
  exp: number;
  iat: number;
  org: string;
}

export interface SigningKeySource {
  privateKeyPem?: string;
  privateKeyFile?: string;
  /** Where the embedded default keeps its generated key. */
  dataDir: string;
}

export interface SigningKey {
  privateKey: KeyObject;
  publicKey: KeyObject;
  kid: string;
  publicJwk: JWK;
  origin: string;
}

/** Loads the Ed25519 signing key from env or file, or generates one once under DATA_DIR (mode 0600). */
export async function loadSigningKey(source: SigningKeySource): Promise<SigningKey> {
  let pem: string;
  let origin: string;
  if (source.privateKeyPem) {
    pem = source.privateKeyPem.replace(/\\n/g, '\n');
    origin = 'JWT_PRIVATE_KEY';
  } else if (source.privateKeyFile) {
    pem = readFileSync(source.privateKeyFile, 'utf8');
    origin = source.privateKeyFile;
  } else {
    const dir = join(source.dataDir, 'keys');
    const file = join(dir, 'jwt-signing-ed25519.pem');
    if (!existsSync(file)) {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      const { privateKey } = generateKeyPairSync('ed25519');
      writeFileSync(file, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600, flag: 'wx' });
    }
    chmodSync(file, 0o600);
    pem = readFileSync(file, 'utf8');
    origin = file;
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(pem);
  } catch {
    throw new Error(`signing key from ${origin} is not a PEM private key`);
  }
  if (privateKey.asymmetricKeyType !== 'ed25519') {
    throw new Error(`signing key from ${origin} must be an Ed25519 key, got ${privateKey.asymmetricKeyType}`);
  }
  const publicKey = createPublicKey(privateKey);
  const jwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(jwk);
  return { privateKey, publicKey, kid, publicJwk: { ...jwk, kid, alg: ALG, use: 'sig' }, origin };
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
  async verify(token: string): Promise<AccessClaims> {
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
          maxTokenAge: this.options.accessTokenTtlSeconds + this.options.clockSkewSeconds,
          requiredClaims: ['sub', 'jti', 'exp', 'iat'],
          currentDate: this.clock.now(),
        },
      ));
    } catch (cause) {
      throw new AppError('UNAUTHENTICATED', 'Invalid or expired access token', { cause });
    }
    if (typeof payload.org !== 'string') throw new AppError('UNAUTHENTICATED', 'Invalid or expired access token');
    return payload as unknown as AccessClaims;
  }
}
