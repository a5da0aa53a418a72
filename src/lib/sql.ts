/** Escapes LIKE wildcards so a search for "a_b" means exactly that. */
export const likePattern = (text: string) => `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;

/**
 * A timestamptz column as Date#toISOString() prints it (UTC, milliseconds, Z), formatted by PostgreSQL: both
 * drivers return it as that text, where they decode a timestamptz differently.
 */
export const isoTimestampSql = (column: string) => `to_char(${column} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

/**
 * A PostgreSQL array literal (`{"a","b",NULL}`) of these values, for one `$n::type[]` parameter: a statement
 * whose text does not change with the number of values, so it is prepared once.
 */
export function pgArrayLiteral(values: readonly (string | number | null)[]): string {
  let out = '{';
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (i > 0) out += ',';
    if (v === null || v === undefined) out += 'NULL';
    else if (typeof v === 'number') out += String(v);
    else out += '"' + v.replace(/[\\"]/g, '\\$&') + '"';
  }
  return out + '}';
}

/**
 * A string as a PostgreSQL escape-string constant (`E'…'`), or NULL, for the statements sent as text without
 * parameters (sendWithCommit). Inside E'…' a backslash and a quote are the only characters with a meaning, and
 * each is doubled, so the constant reads back as exactly the string whatever standard_conforming_strings says.
 * PostgreSQL text cannot hold a NUL character, so a string with one is refused (a parameter would be, too).
 */
export function sqlLiteral(value: string | null): string {
  if (value === null) return 'NULL';
  if (value.includes('\0')) throw new TypeError('a PostgreSQL string cannot contain a NUL character');
  return `E'${value.replace(/[\\']/g, (c) => c + c)}'`;
}
