import { and, asc, eq, sql, type SQL } from 'drizzle-orm';
import { auditRecords } from '../../src/db/schema/audit.js';
import { checkpointMovedChains } from '../../src/domains/audit/chain.js';
import type { TestApp } from './app.js';

export const chainRecords = (t: TestApp, chainId: string) =>
  t.deps.db.select().from(auditRecords).where(eq(auditRecords.chainId, chainId)).orderBy(asc(auditRecords.seq));

export const recordsWhere = (t: TestApp, where: SQL | undefined) => t.deps.db.select().from(auditRecords).where(and(where)).orderBy(asc(auditRecords.id));

export const checkpointNow = (t: TestApp) => checkpointMovedChains(t.deps.db, t.deps.auditSigner, t.deps.clock.now());

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
