import { bigint, index, json, pgTable, primaryKey, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core';

/** What a record carries from the moment it is written: everything but its place in the chain. */
const recordedFields = () => ({
  organizationId: uuid(),
  action: text().notNull(),
  resourceType: text().notNull(),
  resourceId: text(),
  userId: uuid(),
  actorType: text({ enum: ['user', 'system', 'service'] }).notNull(),
  /**
   * json, not jsonb: the text stored is exactly the canonical JSON (RFC 8785) that the record's hash covers,
   * so PostgreSQL can recompute the hash without parsing it (POST /audit/verify, docs/audit.md), and the
   * chainer moves a pending record's text into audit_records as it is.
   */
  details: json().$type<Record<string, unknown>>().notNull(),
  ipAddress: text(),
  userAgent: text(),
  requestId: text(),
  createdAt: timestamp({ withTimezone: true, mode: 'date' }).notNull(),
});

/**
 * Append-only, hash-chained audit records: one chain per organisation plus the platform chain.
 * A trigger (migration 0001) refuses UPDATE, DELETE and TRUNCATE.
 */
export const auditRecords = pgTable(
  'audit_records',
  {
    id: uuid().primaryKey(),
    /** `org:<organization id>` or `platform`. */
    chainId: text().notNull(),
    /** Gapless per chain, from 1. */
    seq: bigint({ mode: 'number' }).notNull(),
    ...recordedFields(),
    previousHash: text().notNull(),
    currentHash: text().notNull(),
  },
  (t) => [
    uniqueIndex('audit_records_chain_seq_key').on(t.chainId, t.seq),
    index('audit_records_org_id_idx').on(t.organizationId, t.id),
    index('audit_records_user_id_idx').on(t.userId, t.id),
    index('audit_records_resource_idx').on(t.resourceType, t.resourceId),
  ],
);

/**
 * Records committed with the change they describe but not chained yet. The chainer (domains/audit/chainer.ts)
 * moves them into audit_records in its own transactions, milliseconds later, so a user's transaction never
 * waits for another's chain-head lock. A trigger (migration 0005) refuses UPDATE and TRUNCATE; only the
 * chainer deletes, in the transaction that inserts the chained record.
 */
export const auditPending = pgTable('audit_pending', {
  id: uuid().primaryKey(),
  chainId: text().notNull(),
  ...recordedFields(),
});

/** The head of every chain; its row lock serialises the chaining of one chain and nothing else. */
export const auditChainHeads = pgTable('audit_chain_heads', {
  chainId: text().primaryKey(),
  seq: bigint({ mode: 'number' }).notNull(),
  hash: text().notNull(),
});

/** Signed (chain, seq, head hash, time) statements; verification checks the chain against them. */
export const auditCheckpoints = pgTable(
  'audit_checkpoints',
  {
    chainId: text().notNull(),
    seq: bigint({ mode: 'number' }).notNull(),
    headHash: text().notNull(),
    signedAt: timestamp({ withTimezone: true, mode: 'date' }).notNull(),
    keyId: text().notNull(),
    signature: text().notNull(),
  },
  (t) => [primaryKey({ columns: [t.chainId, t.seq] })],
);

export type AuditRecordRow = typeof auditRecords.$inferSelect;
export type AuditCheckpointRow = typeof auditCheckpoints.$inferSelect;
