import { sql } from 'drizzle-orm';
import { eq } from 'drizzle-orm';
import { cpSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { auditRecords } from '../src/db/schema/audit.js';
import { credentials } from '../src/db/schema/credentials.js';
import { credentialAad } from '../src/domains/credentials/service.js';
import { open, seal } from '../src/lib/crypto/envelope.js';
import { generateKek, Keyring } from '../src/platform/crypto/keyring.js';
import { createTestApp, INTERNAL_TOKEN, type TestApp } from './support/app.js';
import { snapshotDatabase } from './support/isolation.js';
import { chained } from './support/audit.js';

let t: TestApp;
let org: Awaited<ReturnType<TestApp['createOrganization']>>;
let other: Awaited<ReturnType<TestApp['createOrganization']>>;
const SECRET = 'sk-live-THIS-IS-A-VERY-SECRET-VALUE-9f8e7d';

beforeAll(async () => {
  t = await createTestApp();
  org = await t.createOrganization('Vault');
  other = await t.createOrganization('Other vault');
});
afterAll(async () => t?.close());

let n = 0;
const create = (body: Record<string, unknown>, token = org.admin.token) =>
  t.request('POST', '/credentials', { token, body: { name: `Cred ${++n} ${Date.now()}`, ...body } });

describe('POST /credentials', () => {
  it('stores the secret encrypted and shows it masked only', async () => {
    const res = await create({ kind: 'openai', values: { api_key: SECRET, organization: 'org-123' } });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ kind: 'openai', fields: { organization: 'org-123' }, masked: { api_key: `••••${SECRET.slice(-4)}` }, status: 'ok', version: 1 });
    expect(res.text).not.toContain(SECRET);
    const list = await t.request('GET', '/credentials', { token: org.admin.token });
    expect(list.text).not.toContain(SECRET);
    expect(list.body.items[0]).not.toHaveProperty('ciphertext');
  });

  it('validates the values of each kind, naming the field', async () => {
    const missing = await create({ kind: 'azure_openai', values: { api_key: SECRET } });
    expect(missing.status).toBe(400);
    expect(missing.body.errors.map((e: any) => e.field).sort()).toEqual(['values.api_version', 'values.endpoint']);
    const unknown = await create({ kind: 'anthropic', values: { api_key: SECRET, region: 'x' } });
    expect(unknown.body.errors).toContainEqual(expect.objectContaining({ field: 'values.region' }));
    const badUrl = await create({ kind: 'http', values: { base_url: 'not a url' } });
    expect(badUrl.body.errors).toContainEqual(expect.objectContaining({ field: 'values.base_url' }));
    expect((await create({ kind: 'nope', values: {} })).status).toBe(400);
  });

  it('never echoes a secret, even in an error about bad input', async () => {
    const res = await create({ kind: 'openai', values: { api_key: SECRET, base_url: 42 as unknown as string } });
    expect(res.status).toBe(400);
    expect(res.text).not.toContain(SECRET);
  });
});

describe('at rest', () => {
  it('no table anywhere holds a secret in plaintext', async () => {
    const secrets = ['sk-scan-ALPHA-0123456789abcdef', 'aws-secret-BETA-0123456789abcdef', '{"type":"service_account","private_key":"GAMMA-0123456789"}'];
    await create({ kind: 'openai', values: { api_key: secrets[0]! } });
    await create({ kind: 'aws_bedrock', values: { access_key_id: 'AKIAEXAMPLE', secret_access_key: secrets[1]!, region: 'eu-west-1' } });
    await create({ kind: 'google_vertex', values: { project_id: 'p', location: 'europe-west4', service_account_json: secrets[2]! } });
    const dump = await snapshotDatabase(t);
    for (const s of secrets) expect(dump).not.toContain(s);
    for (const s of secrets) expect(dump).not.toContain(Buffer.from(s).toString('hex'));
    expect(t.logs.join('\n')).not.toMatch(/ALPHA-0123|BETA-0123|GAMMA-0123/);
  });

  it('a ciphertext copied to another row or organisation does not open (AAD binding)', async () => {
    const a = await create({ kind: 'openai', values: { api_key: 'sk-aad-AAAAAAAAAAAAAAAA' } });
    const b = await create({ kind: 'openai', values: { api_key: 'sk-aad-BBBBBBBBBBBBBBBB' } }, other.admin.token);
    const [rowA] = await t.deps.db.select().from(credentials).where(eq(credentials.id, a.body.id));
    await t.deps.db
      .update(credentials)
      .set({ ciphertext: rowA!.ciphertext, iv: rowA!.iv, authTag: rowA!.authTag, wrappedKey: rowA!.wrappedKey, kekId: rowA!.kekId })
      .where(eq(credentials.id, b.body.id));
    const res = await t.request('GET', `/internal/credentials/${b.body.id}/secret`, { headers: { 'x-app-api-token': INTERNAL_TOKEN } });
    expect(res.status).toBe(409);
    expect(res.body.detail).toMatch(/integrity/);
    expect(res.text).not.toContain('AAAAAAAA');
  });

  it('a tampered ciphertext is rejected', async () => {
    const c = await create({ kind: 'openai', values: { api_key: 'sk-tamper-0123456789abcdef' } });
    await t.deps.db.execute(sql`update credentials set ciphertext = set_byte(ciphertext, 0, get_byte(ciphertext, 0) # 1) where id = ${c.body.id}`);
    const res = await t.request('GET', `/internal/credentials/${c.body.id}/secret`, { headers: { 'x-app-api-token': INTERNAL_TOKEN } });
    expect(res.status).toBe(409);
  });

  it('seal/open: the AAD must match exactly', () => {
    const keyring = t.deps.keyring;
    const sealed = seal(Buffer.from('payload'), credentialAad({ organizationId: 'o', id: 'i', version: 1 }), keyring);
    expect(open(sealed, credentialAad({ organizationId: 'o', id: 'i', version: 1 }), keyring).toString()).toBe('payload');
    expect(() => open(sealed, credentialAad({ organizationId: 'o', id: 'i', version: 2 }), keyring)).toThrow(/integrity/);
    expect(() => open(sealed, credentialAad({ organizationId: 'x', id: 'i', version: 1 }), keyring)).toThrow(/integrity/);
  });
});

describe('PUT /credentials/{id}', () => {
  it('sending back the mask keeps the stored secret; a new value replaces it with a new version', async () => {
    const c = await create({ kind: 'openai', values: { api_key: 'sk-original-0123456789', organization: 'a' } });
    const keep = await t.request('PUT', `/credentials/${c.body.id}`, { token: org.admin.token, body: { values: { api_key: c.body.masked.api_key, organization: 'b' } } });
    expect(keep.status).toBe(200);
    expect(keep.body).toMatchObject({ fields: { organization: 'b' }, masked: c.body.masked, version: 2 });
    const reveal = async () => (await t.request('GET', `/internal/credentials/${c.body.id}/secret`, { headers: { 'x-app-api-token': INTERNAL_TOKEN } })).body;
    expect((await reveal()).values).toEqual({ api_key: 'sk-original-0123456789', organization: 'b' });
    const rotate = await t.request('PUT', `/credentials/${c.body.id}`, { token: org.admin.token, body: { values: { api_key: 'sk-rotated-9876543210' } } });
    expect(rotate.body.version).toBe(3);
    expect(rotate.text).not.toContain('sk-rotated');
    expect((await reveal()).values).toEqual({ api_key: 'sk-rotated-9876543210' });
    await chained(t);
    const [audit] = await t.deps.db.select().from(auditRecords).where(eq(auditRecords.resourceId, c.body.id)).orderBy(sql`seq desc`).limit(1);
    expect(JSON.stringify(audit)).not.toContain('sk-');
  });
});

describe('access', () => {
  it('developers read (masked) but do not manage; another organisation’s credential is 404', async () => {
    const c = await create({ kind: 'groq', values: { api_key: 'sk-groq-0123456789abcd' } });
    const dev = await t.createUser(org.admin.token, { role: 'developer' });
    expect((await t.request('GET', '/credentials', { token: dev.token })).body.items.map((x: any) => x.id)).toContain(c.body.id);
    expect((await t.request('PUT', `/credentials/${c.body.id}`, { token: dev.token, body: { name: 'x' } })).status).toBe(403);
    expect((await t.request('DELETE', `/credentials/${c.body.id}`, { token: other.admin.token })).status).toBe(404);
  });

  it('project-scoped credentials follow project roles', async () => {
    const dev = await t.createUser(org.admin.token, { role: 'developer' });
    const tester = await t.createUser(org.admin.token, { role: 'tester' });
    const project = await t.request('POST', '/projects', { token: dev.token, body: { name: `Scoped ${Date.now()}` } });
    const c = await create({ kind: 'openai', project_id: project.body.id, values: { api_key: 'sk-project-0123456789' } }, dev.token);
    expect(c.status).toBe(201);
    expect((await t.request('PUT', `/credentials/${c.body.id}`, { token: dev.token, body: { name: `Renamed ${Date.now()}` } })).status).toBe(200);
    // A tester outside the project does not see it; as a project viewer they see it but cannot change it.
    expect((await t.request('GET', '/credentials', { token: tester.token })).body.items.map((x: any) => x.id)).not.toContain(c.body.id);
    await t.request('POST', `/projects/${project.body.id}/members`, { token: dev.token, body: { user_id: tester.id, role: 'viewer' } });
    expect((await t.request('GET', '/credentials', { token: tester.token })).body.items.map((x: any) => x.id)).toContain(c.body.id);
    expect((await t.request('DELETE', `/credentials/${c.body.id}`, { token: tester.token })).status).toBe(403);
    // The project cannot be deleted while it holds the credential.
    expect((await t.request('DELETE', `/projects/${project.body.id}`, { token: dev.token })).status).toBe(409);
    expect((await t.request('DELETE', `/credentials/${c.body.id}`, { token: dev.token })).status).toBe(200);
    expect((await t.request('DELETE', `/projects/${project.body.id}`, { token: dev.token })).status).toBe(200);
  });
});

describe('GET /internal/credentials/{id}/secret', () => {
  it('refuses without the internal token, and audits every decrypt with who asked', async () => {
    const c = await create({ kind: 'huggingface', values: { token: 'hf_0123456789abcdefghij' } });
    expect((await t.request('GET', `/internal/credentials/${c.body.id}/secret`)).status).toBe(401);
    expect((await t.request('GET', `/internal/credentials/${c.body.id}/secret`, { headers: { 'x-app-api-token': 'wrong' } })).status).toBe(401);
    expect((await t.request('GET', `/internal/credentials/${c.body.id}/secret`, { token: org.admin.token })).status).toBe(401);
    const ok = await t.request('GET', `/internal/credentials/${c.body.id}/secret`, { headers: { 'dapr-api-token': INTERNAL_TOKEN, 'dapr-caller-app-id': 'budcluster' } });
    expect(ok.status).toBe(200);
    expect(ok.body.values).toEqual({ token: 'hf_0123456789abcdefghij' });
    await chained(t);
    const [audit] = await t.deps.db.select().from(auditRecords).where(eq(auditRecords.action, 'secret_access')).orderBy(sql`created_at desc`).limit(1);
    expect(audit).toMatchObject({ resourceId: c.body.id, actorType: 'service', details: { requested_by: 'budcluster', version: 1 } });
    const after = await t.request('GET', `/credentials?search=${encodeURIComponent(c.body.name)}`, { token: org.admin.token });
    expect(after.body.items[0].last_used_at).not.toBeNull();
  });
});

describe('key rotation', () => {
  it('rewraps every data key under the new key without touching payloads, resumably; the old key can then go', async () => {
    const keysDir = mkdtempSync(join(tmpdir(), 'budapp-kek-'));
    cpSync(inject('credentialKeysDir'), keysDir, { recursive: true });
    const vault = await createTestApp({ CREDENTIAL_KEYS_DIR: keysDir });
    try {
      const admin = (await vault.createOrganization()).admin;
      const ids: string[] = [];
      for (let i = 0; i < 7; i++) {
        const res = await vault.request('POST', '/credentials', { token: admin.token, body: { name: `K${i}`, kind: 'openai', values: { api_key: `sk-rotate-${i}-0123456789` } } });
        ids.push(res.body.id);
      }
      const before = await vault.deps.db.select({ id: credentials.id, ciphertext: credentials.ciphertext, kekId: credentials.kekId }).from(credentials);
      const oldKey = vault.deps.keyring.currentId;
      const newKey = generateKek(keysDir, true);
      vault.deps.keyring = Keyring.load(keysDir, { generateIfMissing: false });
      expect(vault.deps.keyring.currentId).toBe(newKey);

      // An interrupted run: one batch of 3, then a fresh run finishes the rest.
      const { rewrapAll } = await import('../src/domains/credentials/rewrap.js');
      const ctx = { db: vault.deps.db, clock: vault.deps.clock, ids: vault.deps.ids, log: vault.deps.log, deps: vault.deps, actor: null, requestId: 'rotation', ip: 'unknown', userAgent: '' };
      const partial = await rewrapAll(ctx, { batchSize: 3, maxBatches: 1 });
      expect(partial).toMatchObject({ rewrapped: 3, remaining: 4 });
      const res = await vault.request('POST', '/credentials/rewrap', { token: vault.superAdmin.token, body: {} });
      expect(res.body).toMatchObject({ current_key_id: newKey, rewrapped: 4, remaining: 0, missing_key: 0 });

      const after = await vault.deps.db.select({ id: credentials.id, ciphertext: credentials.ciphertext, kekId: credentials.kekId }).from(credentials);
      expect(after.every((r) => r.kekId === newKey)).toBe(true);
      for (const b of before) expect(after.find((a) => a.id === b.id)!.ciphertext.equals(b.ciphertext)).toBe(true);

      // Without the old key everything still opens.
      const { rmSync } = await import('node:fs');
      rmSync(join(keysDir, `${oldKey}.pem`));
      vault.deps.keyring = Keyring.load(keysDir, { generateIfMissing: false });
      const reveal = await vault.request('GET', `/internal/credentials/${ids[5]}/secret`, { headers: { 'x-app-api-token': INTERNAL_TOKEN } });
      expect(reveal.body.values.api_key).toBe('sk-rotate-5-0123456789');
      await chained(vault);
      const [audit] = await vault.deps.db.select().from(auditRecords).where(eq(auditRecords.action, 'key_rotation')).orderBy(sql`created_at desc`).limit(1);
      expect(audit!.details).toEqual({ to_key_id: newKey, rewrapped: 4, remaining: 0 });
    } finally {
      await vault.close();
    }
  }, 60_000);

  it('a credential whose key is not loaded shows as needs_reentry and does not break the list', async () => {
    const c = await create({ kind: 'openai', values: { api_key: 'sk-orphan-0123456789' } });
    await t.deps.db.update(credentials).set({ kekId: 'kek-0000000000000000' }).where(eq(credentials.id, c.body.id));
    const list = await t.request('GET', `/credentials?search=${encodeURIComponent(c.body.name)}`, { token: org.admin.token });
    expect(list.status).toBe(200);
    expect(list.body.items[0].status).toBe('needs_reentry');
    const keep = await t.request('PUT', `/credentials/${c.body.id}`, { token: org.admin.token, body: { values: { api_key: c.body.masked.api_key } } });
    expect(keep.status).toBe(409);
    const reentered = await t.request('PUT', `/credentials/${c.body.id}`, { token: org.admin.token, body: { values: { api_key: 'sk-reentered-0123456789' } } });
    expect(reentered.body.status).toBe('ok');
  });
});
