import { randomBytes } from 'node:crypto';
import { sql } from 'drizzle-orm';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, rowsOf, sendWithCommit, type Database, type DbOrTx } from '../src/db/client.js';
import { sqlLiteral } from '../src/lib/sql.js';

/**
 * On PostgreSQL the service runs transactions itself on a reserved postgres.js connection (db/client.ts), so
 * that statements queued with sendWithCommit leave with the COMMIT. What postgres.js's begin() did must still
 * hold, and what it got wrong must not: a COMMIT answered with ROLLBACK, and a connection lost mid-transaction
 * (postgres.js then sent a ROLLBACK on the dead connection, which threw from a timer and, here, would fail the
 * run as an unhandled error). A pool of one connection shows that every transaction gives its connection back.
 */
const url = process.env.TEST_DATABASE_URL;

describe.runIf(url)('transactions on PostgreSQL', () => {
  let database: Database;
  const table = `tx_test_${randomBytes(4).toString('hex')}`;
  const insert = (k: string) => `insert into ${table} (k) values (${sqlLiteral(k)})`;
  const queue = (db: DbOrTx, k: string | null) => sendWithCommit(db, `insert into ${table} (k) values ($1)`, [k]);
  const keys = async (db: DbOrTx = database.db) => rowsOf<{ k: string }>(await db.execute(sql.raw(`select k from ${table} order by k`))).map((r) => r.k);

  beforeAll(async () => {
    database = await openDatabase({ kind: 'postgres', url: url!, poolSize: 1, readPoolSize: 1, preparedStatements: true });
    await database.db.execute(sql.raw(`create table ${table} (k text primary key)`));
  });
  afterAll(async () => {
    await database?.db.execute(sql.raw(`drop table if exists ${table}`));
    await database?.close();
  });

  it('runs a statement queued with sendWithCommit at COMMIT, not before; the pool itself queues nothing', async () => {
    await database.db.transaction(async (tx) => {
      expect(queue(tx, 'queued')).toBe(true);
      await tx.execute(sql.raw(insert('change')));
      expect(await keys(tx)).toEqual(['change']);
    });
    expect(await keys()).toEqual(['change', 'queued']);
    expect(queue(database.db, 'never')).toBe(false);
  });

  it('a queued statement that fails takes the change down with its own error, and the connection serves the next transaction', async () => {
    const attempt = database.db.transaction(async (tx) => {
      await tx.execute(sql.raw(insert('doomed')));
      queue(tx, 'queued'); // already there: a unique violation at COMMIT
    });
    await expect(attempt).rejects.toMatchObject({ code: '23505' });
    expect(await keys()).toEqual(['change', 'queued']);
    await database.db.transaction(async (tx) => tx.execute(sql.raw(insert('next'))));
    expect(await keys()).toContain('next');
  });

  it('drops what a savepoint queued when it rolls back, keeps it when it is released', async () => {
    await database.db.transaction(async (tx) => {
      await tx.transaction(async (sp) => {
        queue(sp, 'released');
      });
      await tx
        .transaction(async (sp) => {
          queue(sp, 'rolled back');
          throw new Error('undo the savepoint');
        })
        .catch(() => undefined);
    });
    expect(await keys()).toContain('released');
    expect(await keys()).not.toContain('rolled back');
  });

  it('a COMMIT answered with ROLLBACK fails the transaction rather than passing for a commit', async () => {
    const attempt = database.db.transaction(async (tx) => {
      await tx.execute(sql.raw(insert('lost')));
      await tx.execute(sql`select 1 / 0`).catch(() => undefined); // the caller swallows the failure and goes on
    });
    await expect(attempt).rejects.toMatchObject({ code: '25P02' });
    expect(await keys()).not.toContain('lost');
  });

  it('an error thrown by the caller rolls back and gives the connection back', async () => {
    await expect(
      database.db.transaction(async (tx) => {
        await tx.execute(sql.raw(insert('thrown')));
        queue(tx, 'thrown too');
        throw new Error('the caller changed its mind');
      }),
    ).rejects.toThrow('the caller changed its mind');
    expect(await keys()).not.toContain('thrown');
    expect(await keys()).not.toContain('thrown too');
  });

  it('puts the arguments in as values, whatever they hold, and refuses one no literal can carry', async () => {
    const odd = ["it's", 'back\\slash', 'a $1 inside', "'); drop table users; --"];
    await database.db.transaction(async (tx) => {
      for (const k of odd) queue(tx, k);
      expect(() => queue(tx, 'nul\0')).toThrow(/NUL/);
    });
    expect(await keys()).toEqual(expect.arrayContaining(odd));
  });

  it('fails a transaction begun after the pool ended, and one still waiting for a connection when it ended', async () => {
    const ending = await openDatabase({ kind: 'postgres', url: url!, poolSize: 1, readPoolSize: 1, preparedStatements: true });
    let release!: () => void;
    const held = ending.db.transaction(async () => new Promise<void>((resolve) => (release = resolve)));
    await expect.poll(() => release).toBeDefined();
    const waiting = ending.db.transaction(async (tx) => tx.execute(sql`select 1`)); // no free connection
    const closing = ending.close();
    await expect(waiting).rejects.toMatchObject({ code: 'CONNECTION_ENDED' });
    await expect(ending.db.transaction(async (tx) => tx.execute(sql`select 1`))).rejects.toMatchObject({ code: 'CONNECTION_ENDED' });
    release();
    await held;
    await closing;
  });

  /**
   * A fresh pool of one connection, whose backends `killer` terminates: anything postgres.js loses on the way
   * shows as a pool that never serves again (withinSeconds).
   */
  async function withPoolOfOne(run: (pool: Database, killer: postgres.Sql) => Promise<void>) {
    const killer = postgres(url!, { max: 1, onnotice: () => {} });
    const pool = await openDatabase({ kind: 'postgres', url: url!, poolSize: 1, readPoolSize: 1, preparedStatements: true });
    try {
      await run(pool, killer);
    } finally {
      await killer.end();
      await pool.close().catch(() => undefined);
    }
  }
  const withinSeconds = <T>(p: Promise<T>) =>
    Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the pool hung')), 5_000))]);
  const backendPid = async (tx: DbOrTx) => rowsOf<{ pid: number }>(await tx.execute(sql`select pg_backend_pid() as pid`))[0]!.pid;
  const selectIn = (pool: Database, n: number) =>
    withinSeconds(pool.db.transaction(async (tx) => rowsOf<{ n: number }>(await tx.execute(sql`select ${n}::int as n`))[0]!.n));
  const runningSleep = (killer: postgres.Sql, pid: number) =>
    expect.poll(async () => (await killer`select 1 from pg_stat_activity where pid = ${pid} and query like '%pg_sleep%'`).length).toBe(1);

  it('a connection lost mid-statement fails its transaction, nothing more is sent on it, and the pool goes on serving', async () => {
    // postgres.js's own begin() sent a ROLLBACK here, which threw from a timer (porsager/postgres#1133) and would
    // fail this run as an unhandled error. Afterwards postgres.js 3.4.9 handed PostgreSQL's FATAL to the first
    // query on the reconnected connection (porsager/postgres#1215); when that was a reserve(), the connection
    // was never seen again and this pool of one hung (patches/postgres+3.4.9.patch).
    await withPoolOfOne(async (pool, killer) => {
      const attempt = pool.db.transaction(async (tx) => {
        const pid = await backendPid(tx);
        const sleeping = Promise.resolve(tx.execute(sql`select pg_sleep(5)`)); // drizzle sends a query when it is awaited
        sleeping.catch(() => undefined); // awaited below; the connection may die first
        await runningSleep(killer, pid);
        await killer`select pg_terminate_backend(${pid})`;
        await sleeping;
      });
      // PostgreSQL's reason (57P01, terminated by an administrator) or postgres.js's CONNECTION_CLOSED, whichever comes first.
      const error = await attempt.then(() => undefined, (e: { code?: string; cause?: { code?: string } }) => e);
      expect(['57P01', 'CONNECTION_CLOSED']).toContain(error?.code ?? error?.cause?.code);
      await new Promise((resolve) => setTimeout(resolve, 100)); // where the ROLLBACK's write would have thrown

      for (let i = 0; i < 3; i++) expect(await selectIn(pool, i)).toBe(i);
      expect(rowsOf(await withinSeconds(pool.db.execute(sql`select 1 as n`)))).toEqual([{ n: 1 }]);
      // No transaction was left open on the connection.
      const open = rowsOf<{ open: boolean }>(await withinSeconds(pool.db.execute(sql`select now() <> statement_timestamp() as open`)))[0]!;
      expect(open.open).toBe(false);
    });
  });

  it('a transaction waiting for the connection that is lost gets it once it is back', async () => {
    // postgres.js 3.4.9 took the waiting reserve() out of its queue as the reconnect's first query and dropped it
    // there: it never settled, and the pool had lost its connection (porsager/postgres#1195; patches/).
    await withPoolOfOne(async (pool, killer) => {
      let pid = 0;
      const holder = pool.db.transaction(async (tx) => {
        pid = await backendPid(tx);
        await tx.execute(sql`select pg_sleep(5)`);
      });
      holder.catch(() => undefined);
      await expect.poll(() => pid).not.toBe(0);
      await runningSleep(killer, pid);
      const waiter = selectIn(pool, 2);
      await new Promise((resolve) => setTimeout(resolve, 100)); // queued behind the holder
      await killer`select pg_terminate_backend(${pid})`;
      await expect(holder).rejects.toThrow();
      expect(await waiter).toBe(2);
    });
  });

  it('a statement sent after the server closed an idle transaction’s connection fails it, and the pool goes on', async () => {
    // As idle_in_transaction_session_timeout does, or a restart between two statements of a transaction.
    await withPoolOfOne(async (pool, killer) => {
      const attempt = pool.db.transaction(async (tx) => {
        const pid = await backendPid(tx);
        await killer`select pg_terminate_backend(${pid})`;
        await expect.poll(async () => (await killer`select 1 from pg_stat_activity where pid = ${pid}`).length).toBe(0);
        await new Promise((resolve) => setTimeout(resolve, 50)); // the close reaches the driver
        await tx.execute(sql`select 1`);
      });
      await expect(attempt).rejects.toThrow();
      await new Promise((resolve) => setTimeout(resolve, 100)); // where a write on the closed socket would throw
      expect(await selectIn(pool, 3)).toBe(3);
    });
  });
});
