import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chainHead, hashedFieldsOf, signedCheckpointsOf } from '../src/domains/audit/chain.js';
import { verifyRangeInDatabase } from '../src/domains/audit/verify-in-database.js';
import { canonicalJson, GENESIS_HASH, hashAuditRecord } from '../src/lib/audit/canonical.js';
import { ChainVerifier } from '../src/lib/audit/verify.js';
import { createTestApp, type TestApp } from './support/app.js';
import { chainRecords, checkpointNow, tamper } from './support/audit.js';

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

/** Verifies a whole chain against its signed checkpoints, in ranges of `rangeSize` records. */
async function verifyInDatabase(chainId: string, rangeSize?: number) {
  const head = await chainHead(t.deps.db, chainId);
  const checkpoints = await signedCheckpointsOf(t.deps.db, chainId, 1, head.seq);
  const verifier = new ChainVerifier(chainId, 1, GENESIS_HASH, checkpoints);
  const seqs = checkpoints.map((c) => c.seq);
  const { rehashed } = await verifyRangeInDatabase(t.deps.database, t.deps.db, verifier, chainId, 1, head.seq, seqs, rangeSize);
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

  it('finds the same first failure in ranges of 4 records (many ranges, finished out of order) as in one range', async () => {
    // Each case tampers with its own chain of about 30 records, checkpointed at two places.
    const chainWithCheckpoints = async () => {
      const org = await t.createOrganization();
      const user = await t.createUser(org.admin.token, { role: 'developer' });
      const rename = async (from: number, to: number) => {
        for (let i = from; i < to; i++) {
          const res = await t.request('PUT', `/users/${user.id}`, { token: org.admin.token, body: { name: `Name ${i}` } });
          expect(res.status).toBe(200);
        }
      };
      await rename(0, 10);
      await checkpointNow(t);
      await rename(10, 20);
      await checkpointNow(t);
      const chainId = `org:${org.id}`;
      const records = await chainRecords(t, chainId);
      expect(records.length).toBeGreaterThanOrEqual(24);
      return { chainId, records };
    };
    type Records = Awaited<ReturnType<typeof chainRecords>>;
    const cases: { name: string; tampering: (chainId: string, records: Records) => ReturnType<typeof sql>[] }[] = [
      { name: 'intact', tampering: () => [] },
      { name: 'first of a range deleted', tampering: (c) => [sql`delete from audit_records where chain_id = ${c} and seq = 9`] },
      { name: 'last of a range deleted', tampering: (c) => [sql`delete from audit_records where chain_id = ${c} and seq = 12`] },
      { name: 'last of a range edited', tampering: (c) => [sql`update audit_records set user_agent = 'edited' where chain_id = ${c} and seq = 16`] },
      { name: 'link broken at a range start', tampering: (c) => [sql`update audit_records set previous_hash = repeat('0', 64) where chain_id = ${c} and seq = 13`] },
      {
        name: 'relinked and rehashed at a range start',
        tampering: (c, records) => {
          const relinked = { ...records[12]!, previousHash: 'f'.repeat(64) };
          const hash = hashAuditRecord(hashedFieldsOf(relinked));
          return [sql`update audit_records set previous_hash = ${relinked.previousHash}, current_hash = ${hash} where chain_id = ${c} and seq = 13`];
        },
      },
      { name: 'newest records deleted', tampering: (c) => [sql`delete from audit_records where chain_id = ${c} and seq >= 22`] },
    ];
    for (const { name, tampering } of cases) {
      const { chainId, records } = await chainWithCheckpoints();
      await tamper(t, tampering(chainId, records));
      const inOne = await verifyInDatabase(chainId);
      const inFours = await verifyInDatabase(chainId, 4);
      expect({ name, ...inFours }, name).toEqual({ name, ...inOne });
      expect(inOne.ok, name).toBe(name === 'intact');
      if (name.startsWith('relinked')) expect(inOne.firstFailure).toMatchObject({ seq: 13, kind: 'link_break' });
      expect(inOne.checkpointsChecked, name).toBe(2);
    }
  });
});
