import fc from 'fast-check';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rowsOf, type Database } from '../src/db/client.js';
import { sqlLiteral } from '../src/lib/sql.js';
import { openTestDatabase } from './support/db.js';

/**
 * sqlLiteral puts values into statement text (the audit insert that leaves with a COMMIT), so a string must
 * read back exactly as it went in, whatever it holds: a literal that could end early would be an injection.
 */
let database: Database;
beforeAll(async () => {
  database = await openTestDatabase();
});
afterAll(async () => database?.close());

const readBack = async (literal: string) => rowsOf<{ v: string | null }>(await database.db.execute(sql.raw(`select ${literal}::text as v`)))[0]!.v;

/** Strings PostgreSQL can hold: well-formed UTF-16 without NUL. */
const storable = (s: string) => !s.includes('\0') && !/[\uD800-\uDFFF]/.test(s.replace(/[\uD800-\uDBFF][\uDC00-\uDFFF]/g, ''));

describe('sqlLiteral', () => {
  it('reads back every string exactly: quotes, backslashes, escapes, dollar signs, any Unicode', async () => {
    const tricky = fc.string({ unit: fc.constantFrom("'", '\\', "\\'", "''", '$$', 'E', '\n', '\t', ';', '--', '/*', 'é', '😀', '\u2028', 'a') });
    await fc.assert(
      fc.asyncProperty(fc.oneof(tricky, fc.string({ unit: 'binary' })).filter(storable), async (s) => {
        expect(await readBack(sqlLiteral(s))).toBe(s);
      }),
      { numRuns: 300 },
    );
  });

  it('an attempt to close the literal and append a statement stays a string', async () => {
    for (const s of ["'); drop table users; --", "\\'; select 1; --", "E'\\\\'", "x'||(select version())||'"]) {
      expect(await readBack(sqlLiteral(s))).toBe(s);
    }
    expect(rowsOf(await database.db.execute(sql`select count(*)::int as n from users`))[0]).toBeDefined();
  });

  it('null is NULL, and a NUL character, which no PostgreSQL text holds, is refused before anything is sent', async () => {
    expect(await readBack(sqlLiteral(null))).toBeNull();
    expect(() => sqlLiteral('a\0b')).toThrow(/NUL/);
  });
});
