import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chainHead } from '../src/domains/audit/chain.js';
import { verifyRangeInDatabase } from '../src/domains/audit/verify-in-database.js';
import { canonicalJson, GENESIS_HASH } from '../src/lib/audit/canonical.js';
import { ChainVerifier } from '../src/lib/audit/verify.js';
import { createTestApp, type TestApp } from './support/app.js';
import { chainRecords, tamper } from './support/audit.js';

/**
 * POST /audit/verify recomputes hashes in PostgreSQL from the stored columns; the service hashes a record
 * itself only where PostgreSQL's result differs. These tests hold the two serialisations to the same bytes
 * for awkward content (so the fast path really is taken), and show that a record the fast path cannot
 * vouch for is decided by the service's own serialisation.
 */
let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(async () => t?.close());

const AWKWARD_NAMES = [
  'Zoë "Quote" \\ Backslash',
  'Tab\there / slash',
  'Line\u2028separator\u2029and \u007f delete',
  'Astral 😀 and CJK 漢字',
  'Control \u0001\u001f chars',
];

async function verifyInDatabase(chainId: string) {
  const head = await chainHead(t.deps.db, chainId);
  const verifier = new ChainVerifier(chainId, 1, GENESIS_HASH, []);
  const { rehashed } = await verifyRangeInDatabase(t.deps.database, t.deps.db, verifier, chainId, 1, head.seq, []);
  return { rehashed, ...verifier.finish(t.deps.auditSigner.verificationKeys, head.seq) };
}

describe('audit verify in the database', () => {
  it('hashes records with escapes, astral characters, U+2028, numbers, booleans and nulls exactly as the service does', async () => {
    const org = await t.createOrganization();
    for (const name of AWKWARD_NAMES) await t.createUser(org.admin.token, { role: 'developer', name });
    const project = await t.request('POST', '/projects', {
      token: org.admin.token,
      body: { name: 'Ünïcode ☃ project', description: 'line one\nline "two"', settings: { icon: '🚀', tags: [{ name: 'ÿ', color: '#00FFaa' }] } },
    });
    expect(project.status).toBe(201);
    await t.request('PUT', `/projects/${project.body.id}`, { token: org.admin.token, body: { description: 'v2 \\ \u2028' } });
    // Its record's details hold numbers (from_seq, to_seq), a boolean and a null.
    expect((await t.request('POST', '/audit/verify', { token: org.admin.token, body: {} })).body.ok).toBe(true);
    const chainId = `org:${org.id}`;
    const records = await chainRecords(t, chainId);
    expect(records.length).toBeGreaterThanOrEqual(AWKWARD_NAMES.length + 3);

    const result = await verifyInDatabase(chainId);
    expect(result).toMatchObject({ ok: true, checked: records.length, rehashed: 0 });
  });

  it('a record whose stored details are not canonical text (as jsonb formats it) is hashed by the service and verifies', async () => {
    const org = await t.createOrganization();
    await t.createUser(org.admin.token, { role: 'developer' });
    const chainId = `org:${org.id}`;
    const records = await chainRecords(t, chainId);
    await tamper(t, [sql`update audit_records set details = details::jsonb::json where chain_id = ${chainId} and seq = 2`]);
    const [stored] = await t.deps.database.query<{ details: string }>('select details::text as details from audit_records where chain_id = $1 and seq = 2', [chainId]);
    expect(stored!.details).not.toBe(canonicalJson(records[1]!.details));

    expect(await verifyInDatabase(chainId)).toMatchObject({ ok: true, checked: records.length, rehashed: 1 });
    const viaApi = await t.request('POST', '/audit/verify', { token: org.admin.token, body: {} });
    expect(viaApi.body).toMatchObject({ ok: true, first_failure: null });
  });

  it('a change the service’s serialisation also sees is reported: details edited as non-canonical text', async () => {
    const org = await t.createOrganization();
    await t.createUser(org.admin.token, { role: 'developer', name: 'Before' });
    const chainId = `org:${org.id}`;
    await chainRecords(t, chainId);
    const [record] = await t.deps.database.query<{ seq: string }>(
      `select seq from audit_records where chain_id = $1 and action = 'create' and resource_type = 'user' order by seq desc limit 1`,
      [chainId],
    );
    await tamper(t, [sql`update audit_records set details = replace(details::text, 'Before', 'After ')::json where chain_id = ${chainId} and seq = ${Number(record!.seq)}`]);
    const result = await verifyInDatabase(chainId);
    expect(result.ok).toBe(false);
    expect(result.firstFailure).toMatchObject({ seq: Number(record!.seq), kind: 'hash_mismatch' });
    expect(result.rehashed).toBe(1);
  });

  it('a stored value that spells another value’s JSON escapes is not taken for it (a stored a\\"b for a hashed a"b)', async () => {
    const org = await t.createOrganization();
    const agent = 'Agent "quoted" C:\\path';
    const created = await t.request('POST', '/users', {
      token: org.admin.token,
      headers: { 'user-agent': agent },
      body: { email: `escapes-${org.id}@example.com`, name: 'Escapes', role: 'developer' },
    });
    expect(created.status).toBe(201);
    const chainId = `org:${org.id}`;
    const records = await chainRecords(t, chainId);
    const record = records.find((r) => r.userAgent === agent)!;
    expect(await verifyInDatabase(chainId)).toMatchObject({ ok: true, rehashed: 0 });

    // Stored now: the value's JSON escapes themselves, so that "the value between quotes" reads as the record hashed.
    const escaped = JSON.stringify(agent).slice(1, -1);
    await tamper(t, [sql`update audit_records set user_agent = ${escaped} where chain_id = ${chainId} and seq = ${record.seq}`]);
    const result = await verifyInDatabase(chainId);
    expect(result.ok).toBe(false);
    expect(result.firstFailure).toMatchObject({ seq: record.seq, kind: 'hash_mismatch' });
    expect(result.rehashed).toBe(1);
  });

  it('a NULL stored where the schema has none is a mismatch, not a record skipped as intact', async () => {
    const org = await t.createOrganization();
    await t.createUser(org.admin.token, { role: 'developer' });
    const chainId = `org:${org.id}`;
    const records = await chainRecords(t, chainId);
    // Neither the first record of the range nor the last, which come back whatever their hash.
    const middle = records[records.length - 2]!;
    expect(middle.seq).toBeGreaterThan(1);
    await tamper(t, [sql`alter table audit_records alter column action drop not null`, sql`update audit_records set action = null where chain_id = ${chainId} and seq = ${middle.seq}`]);
    try {
      const result = await verifyInDatabase(chainId);
      expect(result.ok).toBe(false);
      expect(result.firstFailure).toMatchObject({ seq: middle.seq, kind: 'hash_mismatch' });
    } finally {
      await tamper(t, [sql`update audit_records set action = ${middle.action} where chain_id = ${chainId} and seq = ${middle.seq}`, sql`alter table audit_records alter column action set not null`]);
    }
    expect(await verifyInDatabase(chainId)).toMatchObject({ ok: true });
  });
});
