import { and, asc, eq, sql, type SQL } from 'drizzle-orm';
import { auditRecords } from '../../src/db/schema/audit.js';
import { checkpointMovedChains } from '../../src/domains/audit/chain.js';
import type { TestApp } from './app.js';

/** Chains what requests left pending (records are chained just after their transaction commits). */
export const chained = (t: Pick<TestApp, 'deps'>) => t.deps.auditChainer.chainAll();

export async function chainRecords(t: TestApp, chainId: string) {
  await chained(t);
  return t.deps.db.select().from(auditRecords).where(eq(auditRecords.chainId, chainId)).orderBy(asc(auditRecords.seq));
}

export async function recordsWhere(t: TestApp, where: SQL | undefined) {
  await chained(t);
  return t.deps.db.select().from(auditRecords).where(and(where)).orderBy(asc(auditRecords.id));
}

export async function checkpointNow(t: TestApp) {
  await chained(t);
  return checkpointMovedChains(t.deps.db, t.deps.auditSigner, t.deps.clock.now());
}

/**
 * Runs statements as the database owner with triggers switched off (session_replication_role = replica),
 * the way an attacker with database access would, to prove the chain catches what the trigger cannot.
 */
export async function tamper(t: TestApp, statements: SQL[]) {
  await t.deps.db.transaction(async (tx) => {
    await tx.execute(sql`set local session_replication_role = replica`);
    for (const s of statements) await tx.execute(s);
  });
}
