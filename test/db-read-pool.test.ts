import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { openDatabase } from '../src/db/client.js';

/**
 * Database.query's short reads have a postgres.js pool of their own, which no transaction holds; reads of
 * unbounded cost ({ long: true }) use the main pool. PGlite has a single session, so this is a PostgreSQL
 * property, checked in the suite's PostgreSQL run (TEST_DATABASE_URL).
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
