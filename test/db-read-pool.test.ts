import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { COPY_SESSION, openDatabase, rowsOf } from '../src/db/client.js';

/**
 * Database.query's short reads have a postgres.js pool of their own, which no transaction holds; reads of
 * unbounded cost ({ long: true }) use the main pool. PGlite has a single session, so this is a PostgreSQL
 * property, checked in the suite's PostgreSQL run (TEST_DATABASE_URL). So is the other thing the pools do for
 * every caller: preparing each statement, inside transactions too; and the read pool runs generic plans.
 */
const url = process.env.TEST_DATABASE_URL;

describe.runIf(url)('the pipelined read pool (PostgreSQL)', () => {
  it('answers short reads while every connection of the main pool is inside a transaction; long reads wait', async () => {
    const database = await openDatabase({ kind: 'postgres', url: url!, poolSize: 2, readPoolSize: 1, preparedStatements: true });
    try {
      let release!: () => void;
      const held = new Promise<void>((resolve) => (release = resolve));
      let begun = 0;
      const transactions = [0, 1].map(() =>
        database.db.transaction(async (tx) => {
          await tx.execute(sql`select 1`);
          begun++;
          await held;
        }),
      );
      await expect.poll(() => begun).toBe(2);

      const shortReads = await Promise.all([1, 2, 3].map((n) => database.query<{ n: number }>('select $1::int as n', [n])));
      expect(shortReads).toEqual([[{ n: 1 }], [{ n: 2 }], [{ n: 3 }]]);

      const long = database.query<{ n: number }>('select $1::int as n', [4], { long: true });
      const first = await Promise.race([long.then(() => 'answered'), new Promise((resolve) => setTimeout(() => resolve('waiting'), 300))]);
      expect(first).toBe('waiting');

      release();
      await Promise.all(transactions);
      expect(await long).toEqual([{ n: 4 }]);
    } finally {
      await database.close();
    }
  });
});

describe.runIf(url)('prepared statements (PostgreSQL)', () => {
  it('drizzle’s queries are prepared on the pool and inside transactions and savepoints, where postgres.js hands out fresh handles', async () => {
    const database = await openDatabase({ kind: 'postgres', url: url!, poolSize: 1, readPoolSize: 1, preparedStatements: true });
    const preparedMarks = async (db: typeof database.db) =>
      (await db.execute(sql`select statement from pg_prepared_statements where statement like '%prepared-mark-%'`)) as unknown as { statement: string }[];
    try {
      // Statements without parameters go over the simple protocol, never prepared: each of these has one.
      await database.db.execute(sql`select ${1}::int as m -- prepared-mark-pool`);
      const inside = await database.db.transaction(async (tx) => {
        await tx.execute(sql`select ${2}::int as m -- prepared-mark-transaction`);
        await tx.transaction(async (sp) => {
          await sp.execute(sql`select ${3}::int as m -- prepared-mark-savepoint`);
        });
        return preparedMarks(tx);
      });
      const marks = inside.map((r) => r.statement.match(/prepared-mark-(\w+)/)?.[1]).sort();
      expect(marks).toEqual(['pool', 'savepoint', 'transaction']);
    } finally {
      await database.close();
    }
  });
});

describe.runIf(url)('generic plans for short reads (PostgreSQL)', () => {
  it('a short read runs its statement’s generic plan from the first execution and is never planned again; the main pool still chooses', async () => {
    const database = await openDatabase({ kind: 'postgres', url: url!, poolSize: 1, readPoolSize: 1, preparedStatements: true });
    const plansOf = async (long: boolean) =>
      database.query<{ generic_plans: string; custom_plans: string }>(
        `select generic_plans, custom_plans from pg_prepared_statements where statement like $1 and statement not like '%pg_prepared_statements%'`,
        ['%plan-mark%'],
        { long },
      );
    try {
      for (let i = 0; i < 8; i++) await database.query('select $1::int as n -- plan-mark', [i]);
      for (let i = 0; i < 8; i++) await database.query('select $1::int as n -- plan-mark', [i], { long: true });
      expect(await plansOf(false)).toEqual([{ generic_plans: '8', custom_plans: '0' }]);
      // Left to choose, PostgreSQL plans the first five runs for their values.
      expect(await plansOf(true)).toEqual([{ generic_plans: '3', custom_plans: '5' }]);
    } finally {
      await database.close();
    }
  });
});

describe.runIf(url)('rows of Database.query and rowsOf (PostgreSQL)', () => {
  it('come as plain arrays, short and long reads and db.execute alike, not as the driver’s Result (see detachRows)', async () => {
    const database = await openDatabase({ kind: 'postgres', url: url!, poolSize: 1, readPoolSize: 1, preparedStatements: true });
    try {
      const results = [
        await database.query<{ n: number }>('select n from generate_series(1, $1::int) n', [3]),
        await database.query<{ n: number }>('select n from generate_series(1, $1::int) n', [3], { long: true }),
        rowsOf<{ n: number }>(await database.db.execute(sql`select n from generate_series(1, ${3}::int) n`)),
      ];
      for (const rows of results) {
        expect(Object.getPrototypeOf(rows)).toBe(Array.prototype);
        expect(rows).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }]);
      }
    } finally {
      await database.close();
    }
  });
});

describe.runIf(url)('the COPY session (PostgreSQL)', () => {
  /**
   * A scratch table of one chain's 20,000 lines (in random physical order when `scattered`), and the plan of
   * `select` on it with `settings` set locally, from a plain connection and from one with COPY_SESSION.
   */
  async function plansOf(select: (table: string) => string, settings: string[], scattered: boolean) {
    const sql = postgres(url!, { max: 1, onnotice: () => {} });
    const copySession = postgres(url!, { max: 1, onnotice: () => {}, connection: COPY_SESSION });
    const table = `copy_plan_${randomBytes(4).toString('hex')}`;
    try {
      await sql.unsafe(`create table ${table} (chain_id text not null, seq bigint not null, line text not null, unique (chain_id, seq))`);
      await sql.unsafe(`insert into ${table} select 'org:one', n, repeat('x', 200) from generate_series(1, 20000) n ${scattered ? 'order by random()' : ''}`);
      await sql.unsafe(`analyze ${table}`);
      const plan = async (db: typeof sql) =>
        db.begin(async (tx) => {
          for (const setting of settings) await tx.unsafe(`set local ${setting}`);
          const rows = await tx.unsafe(`explain ${select(table)}`);
          return rows.map((r) => r['QUERY PLAN']).join('\n');
        });
      return { plain: await plan(sql), copySession: await plan(copySession) };
    } finally {
      await sql.unsafe(`drop table if exists ${table}`);
      await Promise.all([sql.end(), copySession.end()]);
    }
  }

  it('reads an ordered range from its index where PostgreSQL would otherwise sort the whole table', async () => {
    // Rows of one chain lie scattered in the table among other chains' (here: inserted in random order), and
    // one chain fills the table, as one large organisation's may: the default plan scans it and sorts. A table
    // far larger than the memory the planner counts on (as the bench's 884 MB one was), in miniature.
    const plans = await plansOf(
      (table) => `select line from ${table} where chain_id = 'org:one' and seq <= 20000 order by seq`,
      [`effective_cache_size = '1MB'`],
      true,
    );
    expect(plans.plain).toMatch(/Sort/);
    expect(plans.copySession).not.toMatch(/Sort/);
    expect(plans.copySession).toMatch(/Index Scan/);
  });

  it('builds the lines in its own process, where PostgreSQL would hand them to parallel workers', async () => {
    // Workers made as cheap as a table of millions of rows makes them next to the lines' cost.
    const plans = await plansOf(
      (table) => `select '{"line":' || to_json(line)::text || '}' from ${table} where chain_id = 'org:one' order by seq`,
      ['parallel_setup_cost = 0', 'parallel_tuple_cost = 0', 'min_parallel_index_scan_size = 0', 'min_parallel_table_scan_size = 0'],
      false,
    );
    expect(plans.plain).toMatch(/Gather/);
    expect(plans.copySession).not.toMatch(/Gather|Parallel/);
    expect(plans.copySession).toMatch(/Index Scan/);
  });
});
