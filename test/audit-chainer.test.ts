import { randomUUID } from 'node:crypto';
import { and, eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditPending, auditRecords } from '../src/db/schema/audit.js';
import { users } from '../src/db/schema/users.js';
import { appendAudit, hashedFieldsOf } from '../src/domains/audit/chain.js';
import { inTransaction } from '../src/domains/service-ctx.js';
import { AuditChainer } from '../src/domains/audit/chainer.js';
import { GENESIS_HASH, hashAuditRecord } from '../src/lib/audit/canonical.js';
import { rowsOf } from '../src/db/client.js';
import { createTestApp, uniqueEmail, type TestApp } from './support/app.js';
import { chainRecords } from './support/audit.js';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp({ AUDIT_CHECKPOINT_EVERY: '5' });
});
afterAll(async () => t?.close());

const pendingOf = (chainId: string) => t.deps.db.select().from(auditPending).where(eq(auditPending.chainId, chainId));

/** Rows as another process would have committed them: pending, with nobody in this process told about them. */
async function writeForeignPending(organizationId: string, n: number) {
  const base = t.clock.now().getTime();
  const rows = Array.from({ length: n }, (_, i) => ({
    id: t.deps.ids.uuid(),
    chainId: `org:${organizationId}`,
    organizationId,
    action: 'login' as const,
    resourceType: 'session' as const,
    userId: null,
    actorType: 'system' as const,
    details: { family_id: randomUUID() },
    requestId: `foreign-${i}`,
    createdAt: new Date(base + i),
  }));
  await t.deps.db.insert(auditPending).values(rows);
  return rows;
}

function expectIntact(rows: (typeof auditRecords.$inferSelect)[]) {
  rows.forEach((r, i) => {
    expect(r.seq).toBe(i + 1);
    expect(r.previousHash).toBe(i === 0 ? GENESIS_HASH : rows[i - 1]!.currentHash);
    expect(hashAuditRecord(hashedFieldsOf(r))).toBe(r.currentHash);
  });
}

describe('chaining after commit', () => {
  it('a committed change is chained moments later without anyone asking', async () => {
    const org = await t.createOrganization();
    const res = await t.request('POST', '/users', { token: org.admin.token, body: { email: uniqueEmail('chained'), name: 'C', role: 'tester' } });
    expect(res.status).toBe(201);
    // No flush here: the chainer's own drain, woken by the append, must get there.
    await expect
      .poll(() => t.deps.db.select().from(auditRecords).where(and(eq(auditRecords.resourceId, res.body.id), eq(auditRecords.action, 'create'))), { timeout: 5_000 })
      .toHaveLength(1);
    expect(await pendingOf(`org:${org.id}`)).toEqual([]);
  });

  it('reads through the API see their own writes at once', async () => {
    const org = await t.createOrganization();
    const res = await t.request('POST', '/users', { token: org.admin.token, body: { email: uniqueEmail('ryw'), name: 'R', role: 'tester' } });
    const list = await t.request('GET', `/audit?resource_id=${res.body.id}`, { token: org.admin.token });
    expect(list.body.items).toEqual([expect.objectContaining({ action: 'create', resource_id: res.body.id })]);
    expect(list.body.items[0].seq).toBeGreaterThan(0);
  });

  it('a change that rolls back after its append leaves nothing pending and nothing chained', async () => {
    const org = await t.createOrganization();
    const email = uniqueEmail('late-rollback');
    const attempt = t.deps.db.transaction(async (db) => {
      const id = t.deps.ids.uuid();
      await db.insert(users).values({ id, email, name: 'L', organizationId: org.id, role: 'tester', status: 'invited' });
      const ctx = { db, clock: t.deps.clock, ids: t.deps.ids, log: t.deps.log, deps: t.deps, actor: null, requestId: 'late', ip: 'unknown', userAgent: '' };
      await appendAudit(ctx, { action: 'create', resourceType: 'user', resourceId: id, organizationId: org.id, details: { after: { email } } });
      throw new Error('the change fails after it was recorded');
    });
    await expect(attempt).rejects.toThrow('after it was recorded');
    await t.deps.auditChainer.chainAll();
    expect(await pendingOf(`org:${org.id}`)).toEqual([]);
    expect((await chainRecords(t, `org:${org.id}`)).filter((r) => r.requestId === 'late')).toEqual([]);
  });

  it('a record whose insert fails takes its change down with it, and the caller hears of it', async () => {
    await t.deps.db.execute(sql`
      create or replace function test_refuse_pending() returns trigger as $$
      begin if new.request_id = 'refuse-me' then raise exception 'refused for the test'; end if; return new; end $$ language plpgsql`);
    await t.deps.db.execute(sql`create trigger test_refuse_pending before insert on audit_pending for each row execute function test_refuse_pending()`);
    try {
      const org = await t.createOrganization();
      const ctx = { db: t.deps.db, clock: t.deps.clock, ids: t.deps.ids, log: t.deps.log, deps: t.deps, actor: null, requestId: 'refuse-me', ip: 'unknown', userAgent: '' };
      // The INSERT fails with the COMMIT it travels with (PostgreSQL) or, sent without waiting (PGlite), on its own or
      // under a later statement of the transaction.
      for (const statementAfter of [false, true]) {
        const email = uniqueEmail('refused');
        const attempt = inTransaction(ctx, async (tx) => {
          const id = t.deps.ids.uuid();
          await tx.db.insert(users).values({ id, email, name: 'F', organizationId: org.id, role: 'tester', status: 'invited' });
          await appendAudit(tx, { action: 'create', resourceType: 'user', resourceId: id, organizationId: org.id, details: { after: { email } } });
          if (statementAfter) await tx.db.update(users).set({ name: 'G' }).where(eq(users.id, id));
          return id;
        });
        // The INSERT's own error (PostgreSQL's message, or its cause where a driver wraps it), not a bare rollback.
        const error = await attempt.then(() => undefined, (e: Error & { cause?: Error }) => e);
        expect(String(error?.cause?.message ?? error?.message)).toMatch(/refused for the test/);
        expect(await t.deps.db.select().from(users).where(eq(users.email, email))).toEqual([]);
      }
    } finally {
      await t.deps.db.execute(sql`drop trigger test_refuse_pending on audit_pending`);
    }
  });

  it('records another process left pending are chained by the sweep, in id order, with checkpoints', async () => {
    const org = await t.createOrganization();
    const chainId = `org:${org.id}`;
    const before = (await chainRecords(t, chainId)).length;
    const foreign = await writeForeignPending(org.id, 12);
    const sweeper = new AuditChainer({ db: t.deps.db, signer: t.deps.auditSigner, clock: t.deps.clock, log: t.deps.log, checkpointEvery: 5, batchSize: 4 });
    sweeper.startSweeping(20);
    try {
      await expect.poll(async () => (await pendingOf(chainId)).length, { timeout: 5_000 }).toBe(0);
    } finally {
      await sweeper.stop();
    }
    const rows = await chainRecords(t, chainId);
    expectIntact(rows);
    expect(rows.slice(before).map((r) => r.id)).toEqual(foreign.map((r) => r.id));
    const verify = await t.request('POST', '/audit/verify', { token: org.admin.token, body: {} });
    expect(verify.body).toMatchObject({ ok: true, first_failure: null });
    expect(verify.body.checkpoints_checked).toBeGreaterThanOrEqual(2);
  });

  it('two chainers working the same backlog never fork a chain or chain a record twice', async () => {
    const orgs = await Promise.all([0, 1, 2].map(() => t.createOrganization()));
    await t.deps.auditChainer.chainAll();
    for (const org of orgs) await writeForeignPending(org.id, 40);
    // A chain with no head yet: both chainers may start it from genesis; one must lose and retry.
    const fresh = t.deps.ids.uuid();
    await writeForeignPending(fresh, 30);
    const make = () => new AuditChainer({ db: t.deps.db, signer: t.deps.auditSigner, clock: t.deps.clock, log: t.deps.log, checkpointEvery: 5, batchSize: 7 });
    const [a, b] = [make(), make()];
    await Promise.all([a.chainAll(), b.chainAll()]);
    for (const org of orgs) {
      const rows = await chainRecords(t, `org:${org.id}`);
      expect(rows.filter((r) => r.requestId?.startsWith('foreign-'))).toHaveLength(40);
      expectIntact(rows);
      expect(new Set(rows.map((r) => r.id)).size).toBe(rows.length);
      expect(await pendingOf(`org:${org.id}`)).toEqual([]);
    }
    const freshRows = await chainRecords(t, `org:${fresh}`);
    expect(freshRows).toHaveLength(30);
    expectIntact(freshRows);
  });

  it('a record pending since before migration 0007, in jsonb’s rendering, is chained with canonical details', async () => {
    const org = await t.createOrganization();
    const chainId = `org:${org.id}`;
    const id = t.deps.ids.uuid();
    // As `details::text::json` left a jsonb value: a space after names and commas, keys by length.
    const jsonbRendering = '{"after": {"id": "u-1", "name": "Zoë \\"Z\\": x", "email": "z@x.test", "role": "admin"}}';
    await t.deps.db.execute(sql`insert into audit_pending (id, chain_id, organization_id, action, resource_type, resource_id, actor_type, details, created_at)
      values (${id}, ${chainId}, ${org.id}, 'create', 'user', 'u-1', 'system', ${jsonbRendering}::json, now())`);
    await t.deps.auditChainer.chainAll();
    const [stored] = rowsOf<{ details: string }>(await t.deps.db.execute(sql`select details::text as details from audit_records where id = ${id}`));
    expect(stored?.details).toBe('{"after":{"email":"z@x.test","id":"u-1","name":"Zoë \\"Z\\": x","role":"admin"}}');
    expectIntact(await chainRecords(t, chainId));
    const verify = await t.request('POST', '/audit/verify', { token: org.admin.token, body: {} });
    expect(verify.body).toMatchObject({ ok: true, first_failure: null });
  });

  it('the database refuses to change or truncate pending records', async () => {
    const org = await t.createOrganization();
    // Inside one transaction, so no chainer can take the row away first.
    const change = t.deps.db.transaction(async (tx) => {
      const id = t.deps.ids.uuid();
      await tx.insert(auditPending).values({ id, chainId: `org:${org.id}`, organizationId: org.id, action: 'login', resourceType: 'session', actorType: 'system', details: {}, createdAt: t.clock.now() });
      await tx.update(auditPending).set({ action: 'logout' }).where(eq(auditPending.id, id));
    });
    await expect(change).rejects.toThrow();
    await expect(t.deps.db.execute(sql`truncate audit_pending`)).rejects.toThrow();
  });
});
