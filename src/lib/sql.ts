/** Escapes LIKE wildcards so a search for "a_b" means exactly that. */
export const likePattern = (text: string) => `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;

/**
 * A timestamptz column as Date#toISOString() prints it (UTC, milliseconds, Z), formatted by PostgreSQL: both
 * drivers return it as that text, where they decode a timestamptz differently.
 */
export const isoTimestampSql = (column: string) => `to_char(${column} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;
