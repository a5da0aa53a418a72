import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashedFieldsOf } from '../src/domains/audit/chain.js';
import { GENESIS_HASH, hashAuditRecord } from '../src/lib/audit/canonical.js';
import { createTestApp, uniqueEmail, type TestApp } from './support/app.js';
import { chainRecords, checkpointNow } from './support/audit.js';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(async () => t?.close());

describe('concurrent appends', () => {
  it('32 parallel writers over 4 organisations leave every chain gapless, unforked and verifiable', async () => {
    const orgs = await Promise.all([0, 1, 2, 3].map(() => t.createOrganization()));
    const writers = Array.from({ length: 32 }, (_, w) => async () => {
      const org = orgs[w % 4]!;
      for (let i = 0; i < 4; i++) {
        const res = await t.request('POST', '/users', { token: org.admin.token, body: { email: uniqueEmail(`w${w}`), name: `Writer ${w}.${i}`, role: 'tester' } });
        expect(res.status).toBe(201);
      }
    });
    await Promise.all(writers.map((write) => write()));
    await checkpointNow(t);
    for (const org of orgs) {
      const rows = await chainRecords(t, `org:${org.id}`);
      expect(rows.filter((r) => r.action === 'create').length).toBe(1 + 32); // the admin + 8 writers × 4 users
      rows.forEach((r, i) => {
        expect(r.seq).toBe(i + 1);
        expect(r.previousHash).toBe(i === 0 ? GENESIS_HASH : rows[i - 1]!.currentHash);
        expect(hashAuditRecord(hashedFieldsOf(r))).toBe(r.currentHash);
      });
      const verify = await t.request('POST', '/audit/verify', { token: org.admin.token, body: {} });
      expect(verify.body).toMatchObject({ ok: true, checked: rows.length });
    }
  }, 120_000);
});
