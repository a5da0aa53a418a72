import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashedFieldsOf } from '../src/domains/audit/chain.js';
import { canonicalJson, hashAuditRecord } from '../src/lib/audit/canonical.js';
import { createTestApp, type TestApp } from './support/app.js';
import { chainRecords, checkpointNow, tamper } from './support/audit.js';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(async () => t?.close());

/** A fresh organisation whose chain has `extra` + 2 records (admin created, admin signed in), checkpointed. */
async function chain(extraUsers = 3) {
  const org = await t.createOrganization();
  for (let i = 0; i < extraUsers; i++) {
    await t.request('POST', '/users', { token: org.admin.token, body: { email: `u${i}-${Date.now()}-${Math.random()}@example.test`, name: `U${i}`, role: 'tester' } });
  }
  await checkpointNow(t);
  const chainId = `org:${org.id}`;
  const rows = await chainRecords(t, chainId);
  const verify = async () => (await t.request('POST', '/audit/verify', { token: org.admin.token, body: {} })).body;
  return { org, chainId, rows, verify };
}

describe('tamper matrix: each change is detected with its kind and seq', () => {
  it('intact chain verifies', async () => {
    const { verify, rows } = await chain();
    const result = await verify();
    expect(result).toMatchObject({ ok: true, checked: rows.length, first_failure: null, checkpoints_checked: 1 });
  });

  it('a field edited in place → hash_mismatch at that seq', async () => {
    const { chainId, verify } = await chain();
    await tamper(t, [sql`update audit_records set details = jsonb_set(details::jsonb, '{after,role}', '"admin"')::json where chain_id = ${chainId} and seq = 3`]);
    const result = await verify();
    expect(result.ok).toBe(false);
    expect(result.first_failure).toMatchObject({ seq: 3, kind: 'hash_mismatch' });
  });

  it('a field edited with its own hash recomputed → link_break at the next seq', async () => {
    const { chainId, rows, verify } = await chain();
    const forged = { ...hashedFieldsOf(rows[2]!), action: 'update' };
    await tamper(t, [sql`update audit_records set action = 'update', current_hash = ${hashAuditRecord(forged)} where chain_id = ${chainId} and seq = 3`]);
    expect((await verify()).first_failure).toMatchObject({ seq: 4, kind: 'link_break' });
  });

  it('a middle record deleted → missing_seq at that seq', async () => {
    const { chainId, verify } = await chain();
    await tamper(t, [sql`delete from audit_records where chain_id = ${chainId} and seq = 3`]);
    expect((await verify()).first_failure).toMatchObject({ seq: 3, kind: 'missing_seq' });
  });

  it('the newest records deleted → missing_seq where the chain now stops short', async () => {
    const { chainId, rows, verify } = await chain();
    const n = rows.length;
    await tamper(t, [sql`delete from audit_records where chain_id = ${chainId} and seq > ${n - 2}`]);
    expect((await verify()).first_failure).toMatchObject({ seq: n - 1, kind: 'missing_seq' });
  });

  it('the newest records deleted and the head row rolled back → the signed checkpoint still catches it', async () => {
    const { chainId, rows, verify } = await chain();
    const n = rows.length;
    await tamper(t, [
      sql`delete from audit_records where chain_id = ${chainId} and seq > ${n - 2}`,
      sql`update audit_chain_heads set seq = ${n - 2}, hash = ${rows[n - 3]!.currentHash} where chain_id = ${chainId}`,
    ]);
    expect((await verify()).first_failure).toMatchObject({ seq: n - 1, kind: 'missing_seq' });
  });

  it('two records swapped → hash_mismatch at the first of them', async () => {
    const { chainId, verify } = await chain();
    await tamper(t, [
      sql`update audit_records set seq = -1 where chain_id = ${chainId} and seq = 3`,
      sql`update audit_records set seq = 3 where chain_id = ${chainId} and seq = 4`,
      sql`update audit_records set seq = 4 where chain_id = ${chainId} and seq = -1`,
    ]);
    expect((await verify()).first_failure).toMatchObject({ seq: 3, kind: 'hash_mismatch' });
  });

  it('the whole chain rewritten with recomputed hashes and head → checkpoint_mismatch at the checkpoint', async () => {
    const { chainId, rows, verify } = await chain();
    const statements = [];
    let previous = rows[0]!.previousHash;
    for (const row of rows) {
      const fields = { ...hashedFieldsOf(row), previous_hash: previous };
      if (row.seq === 2) fields.details = { ...fields.details, forged: true };
      const hash = hashAuditRecord(fields);
      statements.push(sql`update audit_records set details = ${canonicalJson(fields.details)}::json, previous_hash = ${previous}, current_hash = ${hash} where id = ${row.id}`);
      previous = hash;
    }
    statements.push(sql`update audit_chain_heads set hash = ${previous} where chain_id = ${chainId}`);
    await tamper(t, statements);
    const result = await verify();
    expect(result.first_failure).toMatchObject({ seq: rows.length, kind: 'checkpoint_mismatch' });
  });

  it('a forged checkpoint signature → signature_invalid; an unknown key → unknown_key', async () => {
    const forged = await chain();
    await tamper(t, [sql`update audit_checkpoints set signature = ${'A'.repeat(86)} where chain_id = ${forged.chainId}`]);
    expect((await forged.verify()).first_failure).toMatchObject({ seq: forged.rows.length, kind: 'signature_invalid' });
    const unknown = await chain();
    await tamper(t, [sql`update audit_checkpoints set key_id = 'audit-ed25519-0000000000000000' where chain_id = ${unknown.chainId}`]);
    expect((await unknown.verify()).first_failure).toMatchObject({ seq: unknown.rows.length, kind: 'unknown_key' });
  });

  it('records the failed verification itself', async () => {
    const { chainId, verify } = await chain();
    await tamper(t, [sql`delete from audit_records where chain_id = ${chainId} and seq = 2`]);
    await verify();
    const rows = await chainRecords(t, chainId);
    expect(rows.at(-1)).toMatchObject({ action: 'audit_verify', details: { ok: false, first_failure_kind: 'missing_seq' } });
  });
});
