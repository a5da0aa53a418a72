import { z } from 'zod';
import { badField } from './errors.js';
import { JsonText } from './json-text.js';

export const pageInput = {
  limit: z.coerce.number().int().min(1).max(100).default(20).describe('Page size, 1–100 (default 20)'),
  cursor: z.string().max(200).optional().describe('Opaque cursor from the previous page’s next_cursor'),
};

export const pageOf = <T extends z.ZodType>(item: T) =>
  z.object({ items: z.array(item), next_cursor: z.string().nullable() });

const CURSOR_PREFIX = 'v1:';

/** Cursors are opaque to clients: base64url of a versioned last-seen key. */
export function encodeCursor(lastId: string): string {
  return Buffer.from(CURSOR_PREFIX + lastId).toString('base64url');
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function decodeCursor(cursor: string | undefined): string | undefined {
  if (cursor === undefined) return undefined;
  const text = Buffer.from(cursor, 'base64url').toString('utf8');
  const id = text.startsWith(CURSOR_PREFIX) ? text.slice(CURSOR_PREFIX.length) : '';
  if (!UUID_RE.test(id)) throw badField('cursor', 'not a cursor returned by this API');
  return id;
}

/** Callers fetch limit + 1 rows; this maps the first `limit` and derives next_cursor from the last of them. */
function trimPage<R extends { id: string }, D>(rows: R[], limit: number, map: (r: R) => D) {
  const count = Math.min(rows.length, limit);
  const items = new Array<D>(count);
  for (let i = 0; i < count; i++) items[i] = map(rows[i]!);
  return { items, nextCursor: rows.length > limit ? encodeCursor(rows[limit - 1]!.id) : null };
}

export function toPage<R extends { id: string }, D>(rows: R[], limit: number, map: (r: R) => D) {
  const { items, nextCursor } = trimPage(rows, limit, map);
  return { items, next_cursor: nextCursor };
}

/** toPage for rows that PostgreSQL serialised as the items' JSON: the page goes out as text (JsonText). */
export function toJsonTextPage<T>(rows: { id: string; json: string }[], limit: number): JsonText<T> {
  const { items, nextCursor } = trimPage(rows, limit, (r) => r.json);
  return new JsonText(`{"items":[${items.join(',')}],"next_cursor":${JSON.stringify(nextCursor)}}`);
}
