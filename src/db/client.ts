import { join } from 'node:path';
import { PACKAGE_ROOT } from '../lib/package-root.js';
import { mkdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { sql } from 'drizzle-orm';
import type { PgDatabase, PgQueryResultHKT, PgTransaction } from 'drizzle-orm/pg-core';
import type { ExtractTablesWithRelations } from 'drizzle-orm';
import * as schema from './schema/index.js';
import { sqlLiteral } from '../lib/sql.js';

export type Schema = typeof schema;
/** One type for both drivers: drizzle over PGlite and drizzle over postgres.js. */
export type Db = PgDatabase<PgQueryResultHKT, Schema>;
export type Tx = PgTransaction<PgQueryResultHKT, Schema, ExtractTablesWithRelations<Schema>>;
/** Services take whichever handle they are given and never reach for a global one. */
export type DbOrTx = Db | Tx;

export const MIGRATIONS_FOLDER = process.env.MIGRATIONS_DIR ?? join(PACKAGE_ROOT, 'drizzle');

export type DatabaseConfig =
  | { kind: 'pglite'; dataDir?: string; loadDataDir?: Blob }
  /** readPoolSize: connections of the pipelined pool behind query() (default 1). */
  | { kind: 'postgres'; url: string; poolSize: number; readPoolSize?: number; preparedStatements?: boolean };

export interface Database {
  db: Db;
  kind: 'pglite' | 'postgres';
  /** Human-readable description for the start-up log (never contains a password). */
  describe: string;
  migrate(): Promise<void>;
  ping(): Promise<void>;
  /**
   * A fixed statement text with positional parameters ($1, $2, …), outside any transaction, for the hottest
   * reads, which need neither a query builder nor row mapping. On PostgreSQL short reads go through a pool of
   * their own (DATABASE_READ_POOL_SIZE, default 1) that no transaction ever holds: postgres.js pipelines the
   * statements waiting for a busy connection and sends those issued in one tick in one socket write, where
   * the main pool gives each its own idle connection, one write and one backend wake-up apiece
   * (bench/RESULTS.md). Reads whose cost is not bounded (a search that may scan) pass `{ long: true }` and
   * use the main pool, so they never hold up the short ones queued behind them. Prepared once per
   * connection, and the short-read connections use the statement's generic plan from the first run
   * (`plan_cache_mode = force_generic_plan`): left to choose, PostgreSQL 15 kept planning the project pages
   * afresh on every run, which cost as much as running them (35 µs of an admin page's 60, 70 of a member's
   * 140; bench/RESULTS.md). Only fixed statements with bounded, index-driven plans go here, and
   * test/projects-plan.test.ts checks their generic plans. Rows come as both drivers decode them alike:
   * text and uuid as strings, int4 as numbers, json/jsonb parsed; format timestamps in SQL, since the two
   * drivers decode those differently.
   */
  query<T>(text: string, params: unknown[], options?: { long?: boolean }): Promise<T[]>;
  /**
   * PostgreSQL only: the raw bytes of `COPY (<select>) TO STDOUT` (text format), for streaming large results
   * without decoding them row by row. The statement is sent as is: inline parameters before calling. Each
   * COPY runs on a connection of its own, closed when the iteration ends or is abandoned: postgres.js 3.4 can
   * leave a connection's socket paused after a COPY stream ends (porsager/postgres#499, fix proposed in #1016),
   * and in the pool that left the next transaction on it waiting forever (seen in the isolation suite). The
   * connection runs with COPY_SESSION's settings: an ordered COPY streams from an index, never from a sort.
   */
  copyOut?(select: string): AsyncIterable<Buffer>;
  migrationsCurrent(): Promise<boolean>;
  close(): Promise<void>;
}

function expectedMigrationCount(): number {
  const journal = JSON.parse(readFileSync(`${MIGRATIONS_FOLDER}/meta/_journal.json`, 'utf8')) as { entries: unknown[] };
  return journal.entries.length;
}

/**
 * Sends a fixed statement text with positional parameters on whatever `db` is — the pool or an open
 * transaction — through the driver under drizzle, skipping drizzle's query building, which costs about as much
 * as the driver's own work for a statement of a dozen parameters. For the hottest writes (audit records).
 * The result is not decoded into rows alike for both drivers: use it for statements whose answer is not read.
 */
export function sendStatement(db: DbOrTx, text: string, params: unknown[]): Promise<unknown> {
  const client = driverClientOf<DriverClient>(db);
  // postgres.js (pool or a transaction's reserved handle) has unsafe(); PGlite and its transactions have query().
  return 'unsafe' in client ? Promise.resolve(client.unsafe(text, params as never[])) : client.query(text, params);
}
type DriverClient = Pick<import('postgres').Sql, 'unsafe'> | { query(text: string, params: unknown[]): Promise<unknown> };

/** The driver handle under a drizzle db or transaction (drizzle keeps it as `session.client`). */
const driverClientOf = <C>(db: DbOrTx) => (db as unknown as { session: { client: C } }).session.client;

/** db.execute's rows: PGlite answers { rows }, postgres.js an array (its Result, emptied: see detachRows). */
export function rowsOf<T = Record<string, unknown>>(result: unknown): T[] {
  return Array.isArray(result) ? detachRows<T>(result) : ((result as { rows: T[] }).rows ?? []);
}

export async function openDatabase(config: DatabaseConfig): Promise<Database> {
  if (config.kind === 'postgres') {
    const { default: postgres } = await import('postgres');
    const { drizzle } = await import('drizzle-orm/postgres-js');
    const { migrate } = await import('drizzle-orm/postgres-js/migrator');
    const client = postgres(config.url, { max: config.poolSize, onnotice: () => {} });
    const reader = postgres(config.url, { max: config.readPoolSize ?? 1, onnotice: () => {}, connection: { plan_cache_mode: 'force_generic_plan' } });
    if (config.preparedStatements) preparedByDefault(client);
    postgresTransactions(client, Boolean(config.preparedStatements));
    const db = drizzle({ client, schema, casing: 'snake_case' }) as unknown as Db;
    const url = new URL(config.url);
    return {
      db,
      kind: 'postgres',
      query: async <T>(text: string, params: unknown[], options?: { long?: boolean }) =>
        detachRows<T>(await (options?.long ? client : reader).unsafe(text, params as never[], { prepare: Boolean(config.preparedStatements) })),
      describe: `PostgreSQL at ${url.hostname}:${url.port || 5432}${url.pathname} (postgres.js, pool ${config.poolSize} + ${config.readPoolSize ?? 1} for short reads, ${config.preparedStatements ? 'prepared statements' : 'unprepared'})`,
      migrate: () => migrate(db as never, { migrationsFolder: MIGRATIONS_FOLDER }),
      ping: async () => {
        await db.execute(sql`select 1`);
      },
      migrationsCurrent: () => migrationsCurrent(db),
      copyOut: async function* (select) {
        const own = postgres(config.url, { max: 1, onnotice: () => {}, connection: COPY_SESSION });
        try {
          for await (const piece of await own.unsafe(`copy (${select}) to stdout`).readable()) yield piece as Buffer;
        } finally {
          await own.end({ timeout: 5 });
        }
      },
      close: async () => {
        await Promise.all([client.end({ timeout: 5 }), reader.end({ timeout: 5 })]);
      },
    };
  }
  const { PGlite } = await import('@electric-sql/pglite');
  const { drizzle } = await import('drizzle-orm/pglite');
  const { migrate } = await import('drizzle-orm/pglite/migrator');
  if (config.dataDir) mkdirSync(config.dataDir, { recursive: true });
  const client = config.loadDataDir
    ? new PGlite({ loadDataDir: config.loadDataDir })
    : config.dataDir
      ? new PGlite(config.dataDir)
      : new PGlite();
  await client.waitReady;
  const db = drizzle({ client, schema, casing: 'snake_case' }) as unknown as Db;
  return {
    db,
    kind: 'pglite',
    query: async <T>(text: string, params: unknown[]) => (await client.query<T>(text, params)).rows,
    describe: config.dataDir ? `PGlite (embedded) at ${config.dataDir}` : 'PGlite (embedded, in memory)',
    migrate: () => migrate(db as never, { migrationsFolder: MIGRATIONS_FOLDER }),
    ping: async () => {
      await db.execute(sql`select 1`);
    },
    migrationsCurrent: () => migrationsCurrent(db),
    close: () => client.close(),
  };
}

/**
 * Settings of the connection a COPY streams on. The rows in the order asked for, read in that order from an
 * index rather than sorted: left to choose, PostgreSQL 15 exported a chain that filled the table (one large
 * organisation) by a sequential scan and a sort of every line, spilled to disk: seconds before the first byte
 * and the whole export's size in temporary files (bench/RESULTS.md, "Eighth machine"). And one process, no
 * parallel workers: for the same export it chose two workers building the lines and a Gather Merge, which
 * took 1.7 times the CPU of one backend and the cores the service needs to send what the COPY produces
 * (bench/RESULTS.md, "Ninth machine").
 */
export const COPY_SESSION = { enable_sort: 'off', max_parallel_workers_per_gather: '0' } as const;

/**
 * The rows of a postgres.js result as a plain array, with the driver's Result emptied. Under load something keeps
 * postgres.js 3.4's Result objects (Array subclasses carrying five defined properties) alive through every
 * young-generation collection after the caller is done with them, though no heap snapshot shows a reference:
 * each page's rows and their strings (~11 KB a page of 20 projects) were promoted to the old generation and
 * freed only by a mark-compact, one every second or so under the page benchmark, whose pauses made most of its
 * p99. Emptying the Result leaves only its shell to be kept; a plain array holding the same rows is not kept.
 * Measured in bench/RESULTS.md ("Seventh machine").
 */
function detachRows<T>(result: ArrayLike<unknown>): T[] {
  const rows = Array.prototype.slice.call(result) as T[];
  (result as unknown[]).length = 0;
  return rows;
}

type PostgresSql = import('postgres').Sql;

/**
 * drizzle sends every query not built with .prepare() unprepared, which costs postgres.js a second round trip
 * (Parse and Describe, wait, then Bind and Execute) and PostgreSQL a parse and plan each time. This lets
 * postgres.js cache a prepared statement per query text and connection instead (queries here have a bounded
 * set of shapes), on the pool and on the reserved connections that transactions hand to drizzle
 * (postgresTransactions). Behind PgBouncer in transaction mode older than 1.21, set
 * DATABASE_PREPARED_STATEMENTS=false.
 */
function preparedByDefault<S extends PostgresSql>(sql: S): S {
  const unsafe = sql.unsafe.bind(sql);
  sql.unsafe = ((query: string, args?: unknown[], options?: Record<string, unknown>) =>
    unsafe(query, args as never, { ...options, prepare: true })) as typeof sql.unsafe;
  return sql;
}

/** Where a transaction's handle keeps the statements that leave with its COMMIT. */
const COMMIT_TAIL = Symbol('commit tail');

interface TransactionHandle {
  [COMMIT_TAIL]: string[];
  savepoint(...args: unknown[]): Promise<unknown>;
}

/**
 * Queues a statement to run at the COMMIT of the transaction `db` belongs to, in the same simple-protocol
 * message: it costs neither a message nor an answer of its own, and PostgreSQL runs it and commits, or fails
 * it and commits nothing. `text` has parameters $1…$n; `args` go in as literals (sqlLiteral), here, so a value
 * no literal can carry throws at the call. PostgreSQL parses and plans the statement each time: a statement
 * prepared once per connection (EXECUTE) would be cheaper for it, but behind PgBouncer's transaction pooling a
 * client connection's next transaction may run on a server connection where it was never prepared. A
 * statement queued inside a savepoint is dropped if the savepoint rolls back. Returns false where `db` is not
 * such a transaction (PGlite, the pool): the caller sends the statement itself.
 */
export function sendWithCommit(db: DbOrTx, text: string, args: readonly (string | null)[]): boolean {
  const tail = driverClientOf<Partial<TransactionHandle>>(db)[COMMIT_TAIL];
  if (!tail) return false;
  tail.push(text.replace(/\$(\d+)/g, (_, n: string) => sqlLiteral(args[Number(n) - 1] ?? null)));
  return true;
}

/** postgres.js's codes for a connection that is gone, and the socket errors that end one. */
const CONNECTION_LOST = new Set(['CONNECTION_CLOSED', 'CONNECTION_ENDED', 'CONNECTION_DESTROYED', 'CONNECT_TIMEOUT', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT']);

/**
 * Whether an error (or one it wraps, as drizzle's DrizzleQueryError does) says the connection was lost: one of
 * those codes. Not an error PostgreSQL sent as FATAL (a backend terminated by an administrator, a server
 * shutting down): postgres.js 3.4 fails the statement in flight with CONNECTION_CLOSED then, keeps the FATAL
 * and hands it to the first statement on the connection once it has reconnected (porsager/postgres#1215), so
 * a FATAL arrives on a live connection, in a transaction the server has begun. Taken for a loss, that
 * connection stayed reserved for ever, and a pool of one hung on its next transaction.
 */
function connectionLost(err: unknown): boolean {
  for (let e = err, depth = 0; e && typeof e === 'object' && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if (CONNECTION_LOST.has(String((e as { code?: unknown }).code))) return true;
  }
  return false;
}

/**
 * Transactions on postgres.js, run here on a reserved connection instead of by postgres.js's begin(), which
 * always ends with a COMMIT of its own: here the COMMIT carries what sendWithCommit queued (the audit record
 * of the change, the one statement every audited write adds), in one message with one answer, where a
 * statement of its own costs the service a message, an answer and their handling on both sides
 * (bench/RESULTS.md).
 *
 * begin([options], fn) and the handle's savepoint([name], fn) keep postgres.js's signatures, which drizzle
 * calls. A COMMIT that PostgreSQL answers with ROLLBACK (a statement failed and the caller went on) throws
 * rather than passing for a commit. After a failure the transaction is rolled back and the connection goes
 * back to the pool, unless the connection itself was lost: postgres.js has then already set it aside to
 * reconnect, so nothing more is sent on it and nothing is released. Unpatched, postgres.js 3.4.9 wrote such a
 * statement to the closed socket and threw from a timer, out of every caller's reach (its own begin() sends a
 * ROLLBACK then, which crashes the process); patches/postgres+3.4.9.patch ends the reservation with its
 * connection, so a statement sent on it now fails instead (test/db-transactions.test.ts).
 */
function postgresTransactions(sql: PostgresSql, prepared: boolean): void {
  // postgres.js refuses queries once the pool is ending, but its reserve() waits for ever, also when it was
  // already waiting for a connection: a transaction begun then must fail as begin() did, not hang (shutdown).
  let ended: Error | undefined;
  const waiting = new Set<(err: Error) => void>();
  const end = sql.end.bind(sql);
  sql.end = ((options?: { timeout?: number }) => {
    ended = Object.assign(new Error('the database pool has ended'), { code: 'CONNECTION_ENDED' });
    for (const fail of waiting) fail(ended);
    waiting.clear();
    return end(options);
  }) as typeof sql.end;
  const reserve = async () => {
    if (ended) throw ended;
    let fail!: (err: Error) => void;
    const failed = new Promise<never>((_, reject) => (fail = reject));
    waiting.add(fail);
    const reserving = sql.reserve();
    try {
      return await Promise.race([reserving, failed]);
    } catch (err) {
      reserving.then((r) => r.release(), () => undefined); // served after all: hand it back
      throw err;
    } finally {
      waiting.delete(fail);
    }
  };

  (sql as unknown as { begin: (...args: unknown[]) => Promise<unknown> }).begin = async (...args: unknown[]) => {
    const fn = args.pop() as (handle: PostgresSql) => unknown;
    const options = typeof args[0] === 'string' ? args[0].replace(/[^a-z ]/gi, '') : '';
    const reserved = await reserve();
    const conn = prepared ? preparedByDefault(reserved) : reserved;
    const handle = conn as unknown as TransactionHandle;
    handle[COMMIT_TAIL] = [];
    let savepoints = 0;
    handle.savepoint = async (...spArgs: unknown[]) => {
      const spFn = spArgs.pop() as (h: PostgresSql) => unknown;
      const name = `s${++savepoints}`;
      await conn.unsafe(`savepoint ${name}`);
      const outer = handle[COMMIT_TAIL];
      const inner: string[] = [];
      handle[COMMIT_TAIL] = inner;
      try {
        const result = await spFn(conn);
        await conn.unsafe(`release savepoint ${name}`);
        outer.push(...inner);
        return result;
      } catch (err) {
        if (!connectionLost(err)) await conn.unsafe(`rollback to savepoint ${name}`);
        throw err;
      } finally {
        handle[COMMIT_TAIL] = outer;
      }
    };
    let lost = false;
    try {
      await conn.unsafe(`begin ${options}`);
      const result = await fn(conn);
      const tail = handle[COMMIT_TAIL];
      const end = tail.length > 0 ? await conn.unsafe(`${tail.join(';\n')};\ncommit`).simple() : await conn.unsafe('commit');
      if (end.command !== 'COMMIT') {
        throw Object.assign(new Error('the transaction was rolled back at COMMIT: a statement in it had failed'), { code: '25P02' });
      }
      return result;
    } catch (err) {
      lost = connectionLost(err);
      // After a failed COMMIT message the transaction may still be open (its first statement failed); ROLLBACK
      // outside one only warns.
      if (!lost) await conn.unsafe('rollback').catch((rollbackErr: unknown) => (lost = connectionLost(rollbackErr)));
      throw err;
    } finally {
      if (!lost) reserved.release();
    }
  };
}

async function migrationsCurrent(db: Db): Promise<boolean> {
  try {
    const rows = rowsOf(await db.execute(sql`select count(*)::int as n from drizzle.__drizzle_migrations`));
    return Number(rows[0]?.n ?? 0) >= expectedMigrationCount();
  } catch {
    return false;
  }
}
