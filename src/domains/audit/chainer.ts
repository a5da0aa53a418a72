import { sql } from 'drizzle-orm';
import { rowsOf, type Db } from '../../db/client.js';
import { canonicalJson, GENESIS_HASH, hashAuditRecordWithDetailsText, type AuditFieldsBesideDetails } from '../../lib/audit/canonical.js';
import type { Clock } from '../../lib/clock.js';
import type { Logger } from '../../lib/logger.js';
import { isoTimestampSql, pgArrayLiteral } from '../../lib/sql.js';
import type { AuditSigner } from '../../platform/audit/signer.js';
import { writeCheckpoint } from './chain.js';

export interface AuditChainerOptions {
  db: Db;
  signer: AuditSigner;
  clock: Clock;
  log: Logger;
  /** A signed checkpoint whenever a chain's seq reaches a multiple of this. */
  checkpointEvery: number;
  /** Pending records moved per transaction. */
  batchSize?: number;
}

/** A pending row as the chainer reads it: the hashed fields but its place in the chain, details as stored text. */
type PendingRow = Omit<AuditFieldsBesideDetails, 'seq' | 'previous_hash'> & { details: string };

/** Pause between passes that found records, so that under load each pass carries many. */
const GATHER_MS = 5;

/** How long the drain waits for the transactions that announced records to commit, before leaving it to the sweep. */
const COMMIT_WAITS_MS = [1, 2, 4, 8, 16, 32, 64];

/**
 * Moves committed records from audit_pending into their chains. Each pass is one transaction: it takes a
 * batch of pending rows (SKIP LOCKED, so several processes can chain side by side), locks the heads of the
 * chains involved in a fixed order, hashes the records in id order, inserts them, moves the heads and signs
 * checkpoints at every multiple of checkpointEvery. A crash anywhere rolls the pass back; the rows stay
 * pending and the next pass (or another process) chains them.
 *
 * appendAudit calls notify() inside the writer's transaction, before it commits, so a drain that finds
 * nothing retries a few times with growing pauses; a sweep on a timer (server.ts) catches everything else,
 * e.g. rows left by a process that died.
 */
export class AuditChainer {
  private readonly batchSize: number;
  /** Passes run one at a time within a process; this is the tail of that queue. */
  private tail: Promise<unknown> = Promise.resolve();
  private draining: Promise<void> | null = null;
  /** Records were announced since the drain last started a pass. */
  private announced = false;
  private stopped = false;
  private sweepTimer: NodeJS.Timeout | undefined;

  constructor(private readonly o: AuditChainerOptions) {
    this.batchSize = o.batchSize ?? 1000;
  }

  /** A record was written to audit_pending (in a transaction that may not have committed yet). */
  notify(): void {
    this.announced = true;
    this.kick();
  }

  private kick(): void {
    if (this.draining || this.stopped) return;
    this.draining = this.drain().finally(() => {
      this.draining = null;
      // Announced after the drain's last look.
      if (this.announced) this.kick();
    });
  }

  /**
   * Chains every pending record committed before the call, so a reader in this process sees its own
   * writes. Cheap when this process announced nothing since its last empty pass.
   */
  async flush(): Promise<void> {
    if (!this.announced && !this.draining) return;
    await this.chainAll();
  }

  /**
   * Chains everything pending, whoever wrote it; records another chainer is working on are waited for, so
   * on return every record committed before the call is chained. Returns how many records this call chained.
   */
  async chainAll(): Promise<number> {
    const [newest] = rowsOf<{ id: string | null }>(await this.o.db.execute(sql`select id::text as id from audit_pending order by id desc limit 1`));
    const bound = newest?.id;
    if (!bound) return 0;
    let total = 0;
    for (;;) {
      total += await this.pass(true);
      // Passes take the oldest rows first; records written after the call are not waited for.
      const [left] = rowsOf<{ pending: boolean }>(
        await this.o.db.execute(sql`select exists (select 1 from audit_pending where id <= ${bound}::uuid) as pending`),
      );
      if (left?.pending !== true) return total;
    }
  }

  /** Sweeps every `intervalMs` for records no notification covered (other processes, crashes, long transactions). */
  startSweeping(intervalMs: number): void {
    if (intervalMs <= 0 || this.sweepTimer) return;
    this.sweepTimer = setInterval(() => {
      this.drainOnce().catch((err: unknown) => this.o.log.error({ err }, 'audit chaining sweep failed'));
    }, intervalMs);
    this.sweepTimer.unref();
  }

  /** Stops the timers, waits for the drain and chains what is left. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    await this.draining;
    await this.chainAll();
  }

  private async drain(): Promise<void> {
    let waits = 0;
    while (!this.stopped) {
      this.announced = false;
      let n: number;
      try {
        n = await this.pass(false);
      } catch (err) {
        this.o.log.error({ err }, 'audit chaining failed; the sweep will retry');
        this.announced = false;
        return;
      }
      if (n > 0) {
        waits = 0;
        // Let the next batch gather: a pass costs four round trips however many records it carries.
        if (n < this.batchSize) await new Promise((resolve) => setTimeout(resolve, GATHER_MS));
        continue;
      }
      // Nothing committed yet: the announcing transactions may still be open. Look again shortly.
      if (waits >= COMMIT_WAITS_MS.length) return;
      await new Promise((resolve) => setTimeout(resolve, COMMIT_WAITS_MS[waits++]));
    }
  }

  /** Background passes skip rows another chainer holds; it will chain them. */
  private async drainOnce(): Promise<void> {
    while ((await this.pass(false)) === this.batchSize);
  }

  private pass(waitForLocked = false): Promise<number> {
    const run = this.tail.then(() => this.chainBatch(waitForLocked));
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** A new chain's first records chained by two processes at once collide on (chain_id, seq): the loser retries. */
  private async chainBatch(waitForLocked: boolean): Promise<number> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.chainBatchOnce(waitForLocked);
      } catch (err) {
        const code = (err as { code?: string; cause?: { code?: string } }).code ?? (err as { cause?: { code?: string } }).cause?.code;
        if (code !== '23505' || attempt >= 3) throw err;
      }
    }
  }

  /**
   * One transaction, two statements between BEGIN and COMMIT (round trips are what a pass costs): lock the
   * batch and its chains' heads and read them, then move the rows into audit_records and the heads forward.
   * The second statement copies each record from its pending row inside PostgreSQL; only what the service
   * computed (seq and the two hashes) travels back, as array parameters.
   */
  private chainBatchOnce(waitForLocked: boolean): Promise<number> {
    // Rows are locked in id order and heads after them in chain order, so two passes cannot deadlock.
    const lock = waitForLocked ? sql`for update` : sql`for update skip locked`;
    return this.o.db.transaction(async (tx) => {
      const rows = rowsOf<PendingRow & { head_seq: string | number | null; head_hash: string | null }>(
        await tx.execute(sql`
          with batch as (
            select id, chain_id, organization_id, action, resource_type, resource_id, user_id, actor_type, details::text as details,
                   ip_address, user_agent, request_id, ${sql.raw(isoTimestampSql('created_at'))} as created_at
            from audit_pending order by id limit ${this.batchSize} ${lock}
          ), heads as (
            select chain_id, seq, hash from audit_chain_heads where chain_id in (select chain_id from batch) order by chain_id for update
          )
          select batch.*, heads.seq as head_seq, heads.hash as head_hash from batch left join heads using (chain_id)`),
      );
      if (rows.length === 0) return 0;
      rows.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      const head = new Map<string, { seq: number; hash: string }>();
      for (const r of rows) {
        if (!head.has(r.chain_id)) head.set(r.chain_id, { seq: r.head_seq === null ? 0 : Number(r.head_seq), hash: r.head_hash ?? GENESIS_HASH });
      }
      const checkpoints: { chainId: string; seq: number; hash: string }[] = [];
      const ids: string[] = [];
      const seqs: number[] = [];
      const previousHashes: string[] = [];
      const currentHashes: string[] = [];
      const rewrittenDetails: (string | null)[] = new Array<string | null>(rows.length).fill(null);
      for (const r of rows) {
        const h = head.get(r.chain_id)!;
        const details = canonicalDetailsText(r.details);
        if (details !== r.details) rewrittenDetails[ids.length] = details;
        const fields: AuditFieldsBesideDetails = {
          chain_id: r.chain_id,
          seq: h.seq + 1,
          previous_hash: h.hash,
          id: r.id,
          organization_id: r.organization_id,
          action: r.action,
          resource_type: r.resource_type,
          resource_id: r.resource_id,
          user_id: r.user_id,
          actor_type: r.actor_type,
          ip_address: r.ip_address,
          user_agent: r.user_agent,
          request_id: r.request_id,
          created_at: r.created_at,
        };
        const currentHash = hashAuditRecordWithDetailsText(fields, details);
        ids.push(r.id);
        seqs.push(fields.seq);
        previousHashes.push(h.hash);
        currentHashes.push(currentHash);
        h.seq = fields.seq;
        h.hash = currentHash;
        if (fields.seq % this.o.checkpointEvery === 0) checkpoints.push({ chainId: r.chain_id, seq: fields.seq, hash: currentHash });
      }
      const chains = [...head.keys()];
      const idList = pgArrayLiteral(ids);
      const [result] = rowsOf<{ chained: number }>(
        await tx.execute(sql`
          with moved as (
            delete from audit_pending where id = any(${idList}::uuid[]) returning *
          ), chained as (
            insert into audit_records (id, chain_id, seq, organization_id, action, resource_type, resource_id, user_id, actor_type, details,
                                       ip_address, user_agent, request_id, created_at, previous_hash, current_hash)
            select m.id, m.chain_id, v.seq, m.organization_id, m.action, m.resource_type, m.resource_id, m.user_id, m.actor_type, coalesce(v.details::json, m.details),
                   m.ip_address, m.user_agent, m.request_id, m.created_at, v.previous_hash, v.current_hash
            from moved m
            join unnest(${idList}::uuid[], ${pgArrayLiteral(seqs)}::bigint[], ${pgArrayLiteral(previousHashes)}::text[],
                        ${pgArrayLiteral(currentHashes)}::text[], ${pgArrayLiteral(rewrittenDetails)}::text[])
                 as v(id, seq, previous_hash, current_hash, details) using (id)
            returning 1
          ), moved_heads as (
            insert into audit_chain_heads (chain_id, seq, hash)
            select * from unnest(${pgArrayLiteral(chains)}::text[], ${pgArrayLiteral(chains.map((c) => head.get(c)!.seq))}::bigint[],
                                 ${pgArrayLiteral(chains.map((c) => head.get(c)!.hash))}::text[])
            on conflict (chain_id) do update set seq = excluded.seq, hash = excluded.hash
          )
          select count(*)::int as chained from chained`),
      );
      // The rows are locked by this transaction, so every one of them is there to move.
      if (result?.chained !== rows.length) throw new Error(`audit chainer moved ${result?.chained} of ${rows.length} locked pending records`);
      for (const c of checkpoints) await writeCheckpoint(tx, this.o.signer, c, this.o.clock.now());
      return rows.length;
    });
  }
}

/**
 * The canonical text of a pending record's details. appendAudit stores canonicalJson's text; rows written
 * before migration 0007 hold jsonb's rendering, which puts a space after every member name (`"key": value`)
 * where canonical text has none outside strings. Such text is parsed and canonicalised; re-canonicalising a
 * canonical text that merely contains `": ` inside a string gives the same text back.
 */
function canonicalDetailsText(stored: string): string {
  return stored.includes('": ') ? canonicalJson(JSON.parse(stored)) : stored;
}
