import { calculateJwkThumbprint, type JWK } from 'jose';
import { createHmac, createPrivateKey, createPublicKey, generateKeyPairSync, randomUUID, sign, type KeyObject } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, SUPER_EMAIL, SUPER_PASSWORD, type JsonResponse, type TestApp } from './support/app.js';

/**
 * Attacks on access-token verification, all through a real route (GET /auth/me). Every refusal must be
 * the same bland 401 problem document: a client must not learn whether the signature, the algorithm,
 * the key id, the time window or a claim was wrong.
 */

let t: TestApp;
let privateKey: KeyObject;
let jwk: JWK;
let kid: string;
let ttl: number;
let skew: number;
/** The first refusal seen (of a plain garbage token); every other refusal must look exactly like it. */
let reference: { body: Record<string, unknown>; headers: [string, string][] };

const keyFile = () => join(t.config.dataDir, 'keys', 'jwt-signing-ed25519.pem');

beforeAll(async () => {
  t = await createTestApp();
  ttl = t.config.auth.accessTokenTtlSeconds;
  skew = t.config.auth.clockSkewSeconds;
  privateKey = createPrivateKey(readFileSync(keyFile(), 'utf8'));
  const jwks = await t.request('GET', '/.well-known/jwks.json');
  expect(jwks.status).toBe(200);
  jwk = jwks.body.keys[0];
  kid = jwk.kid!;
  reference = shape(await me('garbage'));
  expect(reference.body.status).toBe(401);
});
afterAll(async () => t?.close());

// ---- helpers -------------------------------------------------------------------------------------

const b64 = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
const nowSeconds = () => Math.floor(t.clock.now().getTime() / 1000);

function header(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return { alg: 'EdDSA', kid, typ: 'at+jwt', ...overrides };
}

/** Claims exactly as the service issues them for the super admin; `undefined` drops a claim. */
function claims(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const now = nowSeconds();
  return {
    org: t.superAdmin.organizationId,
    iss: t.config.auth.issuer,
    aud: t.config.auth.audience,
    sub: t.superAdmin.id,
    jti: randomUUID(),
    iat: now,
    nbf: now,
    exp: now + ttl,
    ...overrides,
  };
}

/** Compact JWS signed with Ed25519, with whatever header and payload the caller wants. */
function signEd(head: Record<string, unknown>, payload: unknown, key: KeyObject = privateKey): string {
  const input = `${b64(head)}.${b64(payload)}`;
  return `${input}.${sign(null, Buffer.from(input), key).toString('base64url')}`;
}

/** Compact JWS with an HMAC: the key-confusion attack uses public key material as the secret. */
function signHmac(head: Record<string, unknown>, payload: unknown, secret: Buffer | string): string {
  const input = `${b64(head)}.${b64(payload)}`;
  const bits = String(head.alg).slice(2);
  return `${input}.${createHmac(`sha${bits}`, secret).update(input).digest('base64url')}`;
}

function decode(token: string) {
  const [h, p, s] = token.split('.');
  return {
    header: JSON.parse(Buffer.from(h!, 'base64url').toString()) as Record<string, unknown>,
    payload: JSON.parse(Buffer.from(p!, 'base64url').toString()) as Record<string, unknown>,
    signature: s!,
    parts: [h!, p!, s!] as const,
  };
}

const me = (token: string) => t.request('GET', '/auth/me', { headers: { authorization: `Bearer ${token}` } });

function shape(res: JsonResponse): { body: Record<string, unknown>; headers: [string, string][] } {
  const { request_id: _ignored, ...body } = res.body as Record<string, unknown>;
  const headers = [...res.headers.entries()].filter(([name]) => name !== 'x-request-id').sort(([a], [b]) => a.localeCompare(b));
  return { body, headers };
}

/** The token is refused with exactly the same 401 problem document (apart from the request id) as garbage. */
async function expectRefused(token: string, label = token.slice(0, 40)) {
  const res = await me(token);
  expect(res.status, `${label}: status (${res.text})`).toBe(401);
  expect(res.headers.get('content-type'), label).toBe('application/problem+json');
  expect(res.body, label).toMatchObject({ status: 401, title: 'Unauthorized' });
  expect(typeof res.body.request_id, label).toBe('string');
  expect(res.body.detail, `${label}: detail`).toBe(reference.body.detail);
  expect(shape(res), `${label}: whole response`).toEqual(reference);
}

async function expectAccepted(token: string, label = 'token') {
  const res = await me(token);
  expect(res.status, `${label}: ${res.text}`).toBe(200);
  expect(res.body.user.id).toBe(t.superAdmin.id);
}

/** Runs `fn` with the service clock moved by `seconds`, then puts it back. */
async function withClockAdvanced(seconds: number, fn: () => Promise<void>) {
  t.clock.advance(seconds);
  try {
    await fn();
  } finally {
    t.clock.advance(-seconds);
  }
}

// ---- the key and the JWKS ------------------------------------------------------------------------

describe('signing key and JWKS', () => {
  it('publishes exactly one public Ed25519 key with kid, alg EdDSA and use sig', async () => {
    const res = await t.request('GET', '/.well-known/jwks.json');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(res.body.keys).toHaveLength(1);
    const key = res.body.keys[0];
    expect(key).toMatchObject({ kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', use: 'sig' });
    expect(key.kid).toEqual(expect.any(String));
    expect(key.kid.length).toBeGreaterThan(0);
    expect(key.x).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(key).not.toHaveProperty('d');
    expect(Object.keys(key).sort()).toEqual(['alg', 'crv', 'kid', 'kty', 'use', 'x']);
  });

  it('the published key is the public half of the key on disk and its kid is the JWK thumbprint', async () => {
    const fromDisk = createPublicKey(privateKey).export({ format: 'jwk' });
    expect(jwk.x).toBe(fromDisk.x);
    expect(kid).toBe(await calculateJwkThumbprint({ kty: 'OKP', crv: 'Ed25519', x: jwk.x! }));
  });

  it('keeps the private key file readable by the owner only (0600)', () => {
    expect(statSync(keyFile()).mode & 0o777).toBe(0o600);
    expect(statSync(join(t.config.dataDir, 'keys')).mode & 0o077).toBe(0);
  });

  it('issues EdDSA at+jwt tokens with the published kid and a lifetime of at most 15 minutes', async () => {
    const session = await t.login(SUPER_EMAIL, SUPER_PASSWORD);
    const { header: head, payload } = decode(session.access_token);
    expect(head).toEqual({ alg: 'EdDSA', kid, typ: 'at+jwt' });
    expect(payload).toMatchObject({ iss: t.config.auth.issuer, aud: t.config.auth.audience, sub: t.superAdmin.id, org: t.superAdmin.organizationId });
    expect(payload.jti).toEqual(expect.any(String));
    const lifetime = (payload.exp as number) - (payload.iat as number);
    expect(lifetime).toBeGreaterThan(0);
    expect(lifetime).toBeLessThanOrEqual(15 * 60);
    expect(lifetime).toBe(ttl);
  });
});

// ---- positive controls ---------------------------------------------------------------------------

describe('positive controls', () => {
  it('accepts a token signed with the real key and correct claims', async () => {
    await expectAccepted(signEd(header(), claims()), 'self-signed control');
  });

  it('accepts a real login token', async () => {
    const session = await t.login(SUPER_EMAIL, SUPER_PASSWORD);
    await expectAccepted(session.access_token, 'login token');
  });

  it('tolerates clock skew within TOKEN_CLOCK_SKEW_SECONDS (exp just passed, nbf just ahead)', async () => {
    const now = nowSeconds();
    await expectAccepted(signEd(header(), claims({ iat: now - ttl, nbf: now - ttl, exp: now - (skew - 5) })), 'exp within skew');
    await expectAccepted(signEd(header(), claims({ iat: now, nbf: now + (skew - 5) })), 'nbf within skew');
  });
});

// ---- attacks -------------------------------------------------------------------------------------

describe('refused tokens all get the same bland 401', () => {
  it('the bland detail names no specific reason', () => {
    expect(reference.body.detail).toEqual(expect.any(String));
    expect(reference.body.detail).not.toMatch(/signature|alg|kid|key|typ|iss|aud|claim|nbf|iat|jti|sub|org|malformed|decode/i);
    expect(reference.body).not.toHaveProperty('errors');
  });

  it('alg none (unsigned JWT)', async () => {
    for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
      const unsigned = `${b64(header({ alg }))}.${b64(claims())}`;
      await expectRefused(`${unsigned}.`, `alg ${alg}, empty signature`);
      await expectRefused(unsigned, `alg ${alg}, two parts`);
      // An unsigned header glued to a genuine EdDSA signature over the same input.
      await expectRefused(`${unsigned}.${sign(null, Buffer.from(unsigned), privateKey).toString('base64url')}`, `alg ${alg}, real signature`);
    }
    const noAlg = header();
    delete noAlg.alg;
    await expectRefused(signEd(noAlg, claims()), 'no alg header');
  });

  it('HS256/384/512 signed with the public key (key confusion), from the JWKS and the raw key', async () => {
    const publicKey = createPublicKey(privateKey);
    const jwksResponse = await t.request('GET', '/.well-known/jwks.json');
    const secrets: Record<string, Buffer | string> = {
      'JWKS document text': jwksResponse.text,
      'JWK JSON': JSON.stringify(jwk),
      'JWK x (base64url text)': jwk.x!,
      'raw 32-byte public key': Buffer.from(jwk.x!, 'base64url'),
      'SPKI PEM': publicKey.export({ type: 'spki', format: 'pem' }),
      'SPKI DER': publicKey.export({ type: 'spki', format: 'der' }),
    };
    expect((secrets['raw 32-byte public key'] as Buffer).length).toBe(32);
    for (const alg of ['HS256', 'HS384', 'HS512']) {
      for (const [name, secret] of Object.entries(secrets)) {
        await expectRefused(signHmac(header({ alg }), claims(), secret), `${alg} with ${name}`);
        await expectRefused(signHmac(header({ alg, kid: undefined }), claims(), secret), `${alg} with ${name}, no kid`);
      }
    }
  });

  it('other asymmetric algorithms are refused even when the signature is genuine EdDSA', async () => {
    for (const alg of ['RS256', 'ES256', 'PS256', 'Ed25519', 'ed25519', 'EDDSA']) {
      await expectRefused(signEd(header({ alg }), claims()), `alg ${alg}`);
    }
  });

  it('expired: a token signed with the real key whose exp is beyond the skew', async () => {
    const now = nowSeconds();
    await expectRefused(signEd(header(), claims({ iat: now - ttl - skew - 10, nbf: now - ttl - skew - 10, exp: now - skew - 10 })), 'exp past skew');
    await expectRefused(signEd(header(), claims({ iat: now - 86_400 - ttl, nbf: now - 86_400 - ttl, exp: now - 86_400 })), 'expired a day ago');
    await expectRefused(signEd(header(), claims({ exp: 0 })), 'exp 0');
  });

  it('expired: a real login token once the clock passes ttl + skew (used before, and never used)', async () => {
    const used = await t.login(SUPER_EMAIL, SUPER_PASSWORD);
    const unused = await t.login(SUPER_EMAIL, SUPER_PASSWORD);
    await expectAccepted(used.access_token, 'fresh login token');
    await withClockAdvanced(ttl + skew + 1, async () => {
      await expectRefused(used.access_token, 'used login token after ttl+skew');
      await expectRefused(unused.access_token, 'unused login token after ttl+skew');
    });
  });

  it('not yet valid: nbf or iat in the future beyond the skew', async () => {
    const future = nowSeconds() + skew + 60;
    await expectRefused(signEd(header(), claims({ nbf: future, exp: future + ttl })), 'nbf in the future');
    await expectRefused(signEd(header(), claims({ iat: future, nbf: undefined, exp: future + ttl })), 'iat in the future, no nbf');
    await expectRefused(signEd(header(), claims({ iat: future, nbf: future, exp: future + ttl })), 'iat and nbf in the future');
  });

  it('wrong, missing or mistyped issuer', async () => {
    for (const iss of ['evil', `${t.config.auth.issuer} `, t.config.auth.issuer.toUpperCase(), 'https://keycloak.example/realms/budapp', [t.config.auth.issuer], 42]) {
      await expectRefused(signEd(header(), claims({ iss })), `iss ${JSON.stringify(iss)}`);
    }
    await expectRefused(signEd(header(), claims({ iss: undefined })), 'no iss');
  });

  it('wrong or missing audience', async () => {
    for (const aud of ['evil', `${t.config.auth.audience}-other`, ['evil', 'other'], [], 42]) {
      await expectRefused(signEd(header(), claims({ aud })), `aud ${JSON.stringify(aud)}`);
    }
    await expectRefused(signEd(header(), claims({ aud: undefined })), 'no aud');
  });

  it('wrong or missing typ header', async () => {
    for (const typ of ['JWT', 'jwt', 'at+JWS', 'rt+jwt', 'application/jwt', 'id_token', '']) {
      await expectRefused(signEd(header({ typ }), claims()), `typ ${typ}`);
    }
    await expectRefused(signEd(header({ typ: undefined }), claims()), 'no typ');
  });

  it('unknown or missing kid', async () => {
    for (const other of ['unknown', `${kid}x`, kid.slice(1), kid.toLowerCase() === kid ? kid.toUpperCase() : kid.toLowerCase(), '', '../../etc/passwd']) {
      await expectRefused(signEd(header({ kid: other }), claims()), `kid ${other}`);
    }
    await expectRefused(signEd(header({ kid: undefined }), claims()), 'no kid');
  });

  it('a token signed by a different Ed25519 key carrying the right kid (also with that key embedded as jwk/jku)', async () => {
    const attacker = generateKeyPairSync('ed25519');
    const attackerJwk = attacker.publicKey.export({ format: 'jwk' });
    await expectRefused(signEd(header(), claims(), attacker.privateKey), 'foreign key, right kid');
    await expectRefused(signEd(header({ jwk: { ...attackerJwk, kid } }), claims(), attacker.privateKey), 'foreign key embedded as jwk');
    await expectRefused(signEd(header({ jku: 'https://attacker.example/jwks.json' }), claims(), attacker.privateKey), 'jku header');
    await expectRefused(signEd(header({ kid: await calculateJwkThumbprint(attackerJwk as JWK) }), claims(), attacker.privateKey), 'foreign key, its own kid');
  });

  it('a critical header extension the service does not understand', async () => {
    await expectRefused(signEd(header({ crit: ['exp-policy'], 'exp-policy': 'lenient' }), claims()), 'crit');
    await expectRefused(signEd(header({ b64: false, crit: ['b64'] }), claims()), 'b64 false');
  });

  it('tampered payload, header or signature of a real token', async () => {
    const other = await t.createOrganization();
    const session = await t.login(SUPER_EMAIL, SUPER_PASSWORD);
    const real = decode(session.access_token);
    const withPayload = (changes: Record<string, unknown>) => `${real.parts[0]}.${b64({ ...real.payload, ...changes })}.${real.signature}`;
    await expectRefused(withPayload({ sub: other.admin.id }), 'sub flipped to another user');
    await expectRefused(withPayload({ org: other.id }), 'org flipped');
    await expectRefused(withPayload({ exp: (real.payload.exp as number) + 86_400 }), 'exp extended');
    await expectRefused(withPayload({ role: 'super_admin' }), 'extra claim');
    // Same JSON, different serialisation: the signature covers bytes, not meaning.
    await expectRefused(`${real.parts[0]}.${Buffer.from(JSON.stringify(real.payload, null, 1)).toString('base64url')}.${real.signature}`, 'reserialised payload');
    await expectRefused(`${b64({ ...real.header, typ: 'AT+JWT' })}.${real.parts[1]}.${real.signature}`, 'header rewritten');
    const sig = Buffer.from(real.signature, 'base64url');
    sig[10] = sig[10]! ^ 0x01;
    await expectRefused(`${real.parts[0]}.${real.parts[1]}.${sig.toString('base64url')}`, 'signature bit flipped');
    await expectRefused(`${real.parts[0]}.${real.parts[1]}.${real.signature.slice(0, -4)}`, 'signature truncated');
    await expectRefused(`${real.parts[0]}.${real.parts[1]}.`, 'signature stripped');
    await expectRefused(`${real.parts[0]}.${real.parts[1]}.${real.signature}.${real.signature}`, 'extra segment');
    // The untouched original still works, and a tampered copy did not poison the verified-token cache.
    await expectAccepted(session.access_token, 'original after tampering');
    await expectRefused(withPayload({ sub: other.admin.id }), 'sub flipped again after the original was cached');
  });

  it('missing or mistyped required claims (signed with the real key)', async () => {
    for (const claim of ['jti', 'sub', 'org', 'exp', 'iat']) {
      await expectRefused(signEd(header(), claims({ [claim]: undefined })), `no ${claim}`);
    }
    for (const [claim, value] of [
      ['exp', String(nowSeconds() + ttl)],
      ['iat', String(nowSeconds())],
      ['nbf', 'now'],
      ['org', 42],
      ['org', null],
      ['sub', null],
      ['exp', null],
    ] as const) {
      await expectRefused(signEd(header(), claims({ [claim]: value })), `${claim} = ${JSON.stringify(value)}`);
    }
    await expectRefused(signEd(header(), 'not json'), 'payload not JSON');
    await expectRefused(signEd(header(), [claims()]), 'payload is an array');
    await expectRefused(signEd(header(), null), 'payload null');
  });

  it('a correctly signed token for a user that does not exist', async () => {
    await expectRefused(signEd(header(), claims({ sub: randomUUID() })), 'unknown user id');
  });

  it('a correctly signed token whose sub is not a UUID string', async () => {
    for (const sub of ['admin', '', `${t.superAdmin.id} `, 42, { id: t.superAdmin.id }]) {
      await expectRefused(signEd(header(), claims({ sub })), `sub ${JSON.stringify(sub)}`);
    }
  });

  it('a token whose org claim does not match the user’s organisation', async () => {
    const other = await t.createOrganization();
    await expectRefused(signEd(header(), claims({ org: other.id })), 'super admin with another org');
    await expectRefused(signEd(header(), claims({ sub: other.admin.id, org: t.superAdmin.organizationId })), 'other admin with the default org');
    await expectRefused(signEd(header(), claims({ org: randomUUID() })), 'unknown org');
    // Control: the other organisation's admin with the right org is accepted.
    const res = await me(signEd(header(), claims({ sub: other.admin.id, org: other.id })));
    expect(res.status).toBe(200);
    expect(res.body.organization.id).toBe(other.id);
  });

  it('garbage strings', async () => {
    const h = b64(header());
    const p = b64(claims());
    const garbage = [
      'x',
      'null',
      'undefined',
      '{}',
      '.',
      '..',
      '...',
      'a.b.c',
      'a.b.c.d.e',
      `${h}.${p}`,
      `${h}..`,
      `.${p}.`,
      `${b64('not json')}.${p}.AAAA`,
      `${b64('[]')}.${p}.AAAA`,
      `${b64('null')}.${p}.AAAA`,
      `${h}.${p}.!!!!`,
      `${h}=.${p}=.AAAA==`,
      'eyJ',
      'eyJhbGciOiJub25lIn0',
      'x'.repeat(16_000),
      `${h}.${'A'.repeat(20_000)}.AAAA`,
      'Bearer',
      '%00%00',
      '\\u0000',
      'rt_',
    ];
    for (const token of garbage) await expectRefused(token, `garbage ${token.slice(0, 30)}`);
  });

  it('a refresh token used as a bearer token', async () => {
    const session = await t.login(SUPER_EMAIL, SUPER_PASSWORD);
    await expectRefused(session.refresh_token, 'refresh token as bearer');
    // It was not consumed by the attempt: it still refreshes.
    const refreshed = await t.request('POST', '/auth/refresh', { body: { refresh_token: session.refresh_token } });
    expect(refreshed.status).toBe(200);
  });

  it('a malformed Authorization header is a 401 problem too (its detail may differ: nothing about a token is revealed)', async () => {
    for (const authorization of ['Bearer', 'Bearer ', 'Bearer a b', `Basic ${Buffer.from('a:b').toString('base64')}`, 'Token abc', 'abc']) {
      const res = await t.request('GET', '/auth/me', { headers: { authorization } });
      expect(res.status, authorization).toBe(401);
      expect(res.headers.get('content-type')).toBe('application/problem+json');
    }
  });
});

describe('token age is bounded by the configured lifetime, not only by exp', () => {
  // Only a holder of the signing key can mint such a token (a leaked key, another deployment sharing the key
  // with a longer ACCESS_TOKEN_TTL_SECONDS, a lowered TTL during a rolling deploy). The verifier enforces
  // maxTokenAge from iat; these tests pin that down.

  it('refuses a token whose exp lies far beyond iat once it is older than ttl + 2*skew', async () => {
    const token = signEd(header(), claims({ exp: nowSeconds() + 86_400 }));
    await withClockAdvanced(ttl + 2 * skew + 5, async () => {
      await expectRefused(token, 'long-lived token, first seen when too old');
    });
  });

  it('refuses that same kind of token after it was cached while young', async () => {
    const token = signEd(header(), claims({ exp: nowSeconds() + 86_400 }));
    await expectAccepted(token, 'long-lived token while young');
    await withClockAdvanced(ttl + 2 * skew + 5, async () => {
      await expectRefused(token, 'long-lived token, seen before, now too old');
    });
  });
});
