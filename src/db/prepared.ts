import type { Db, DbOrTx } from './client.js';

const statements = new WeakMap<Db, Map<string, unknown>>();

/**
 * A drizzle query built once per database handle and executed with placeholders, for the hottest reads:
 * building a query costs more CPU than PostgreSQL spends answering a single-row lookup. Inside a
 * transaction (`db` is a tx) it returns undefined and the caller builds the query as usual.
 */
export function prepared<T>(db: DbOrTx, root: Db, name: string, build: (db: Db) => T): T | undefined {
  if (db !== root) return undefined;
  let byName = statements.get(root);
  if (!byName) statements.set(root, (byName = new Map()));
  let statement = byName.get(name) as T | undefined;
  if (!statement) byName.set(name, (statement = build(root)));
  return statement;
}
