import { isoTimestampSql } from '../../lib/sql.js';

/** A piece of a record's JSON text: raw JSON, or an SQL expression giving text. */
type Piece = { json: string } | { sql: string };
const json = (text: string): Piece => ({ json: text });
const expr = (text: string): Piece => ({ sql: text });
/** A value as JSON, null as null. */
const orNull = (text: string): Piece[] => [expr(`coalesce(${text}, 'null')`)];
/** A value between quotes; the value must not be NULL. */
const quoted = (text: string): Piece[] => [json('"'), expr(text), json('"')];

/**
 * Each audit_records column as the JSON text of its value, built by PostgreSQL, NULL as null (the schema
 * allows none in most columns, but an export must show what is stored, and a verify must see a NULL as a
 * change): text through to_json (JSON.stringify's escaping), uuids and seq as they print, created_at as
 * Date#toISOString() prints it, details as stored (json holding the canonical text the chainer hashed).
 */
const COLUMN_JSON = {
  action: orNull('to_json(action)::text'),
  actor_type: orNull('to_json(actor_type)::text'),
  chain_id: orNull('to_json(chain_id)::text'),
  created_at: orNull(`'"' || ${isoTimestampSql('created_at')} || '"'`),
  current_hash: orNull('to_json(current_hash)::text'),
  details: orNull('details::text'),
  id: orNull(`'"' || id || '"'`),
  ip_address: orNull('to_json(ip_address)::text'),
  organization_id: orNull(`'"' || organization_id || '"'`),
  previous_hash: orNull('to_json(previous_hash)::text'),
  request_id: orNull('to_json(request_id)::text'),
  resource_id: orNull('to_json(resource_id)::text'),
  resource_type: orNull('to_json(resource_type)::text'),
  seq: orNull('seq::text'),
  user_agent: orNull('to_json(user_agent)::text'),
  user_id: orNull(`'"' || user_id || '"'`),
} satisfies Record<string, Piece[]>;

export type AuditColumn = keyof typeof COLUMN_JSON;

/**
 * The columns as they are in a row that takes the plain form (see recordJsonSql): text columns between quotes
 * as they stand, a nullable one as null when NULL. `checked` says what the plain form relies on: a `text`
 * column is searched for characters JSON escapes (`nullable`: as '' when NULL; otherwise a NULL makes the
 * search NULL and the row takes the to_json form), a `notNull` one is tested for NULL.
 */
const PLAIN_JSON: Record<AuditColumn, { pieces: Piece[]; checked?: 'text' | 'notNull'; nullable?: true }> = {
  action: { pieces: quoted('action'), checked: 'text' },
  actor_type: { pieces: quoted('actor_type'), checked: 'text' },
  chain_id: { pieces: quoted('chain_id'), checked: 'text' },
  created_at: { pieces: quoted(isoTimestampSql('created_at')), checked: 'notNull' },
  current_hash: { pieces: quoted('current_hash'), checked: 'text' },
  details: { pieces: [expr('details::text')], checked: 'notNull' },
  id: { pieces: quoted('id::text'), checked: 'notNull' },
  ip_address: { pieces: orNull(`'"' || ip_address || '"'`), checked: 'text', nullable: true },
  organization_id: { pieces: COLUMN_JSON.organization_id },
  previous_hash: { pieces: quoted('previous_hash'), checked: 'text' },
  request_id: { pieces: orNull(`'"' || request_id || '"'`), checked: 'text', nullable: true },
  resource_id: { pieces: orNull(`'"' || resource_id || '"'`), checked: 'text', nullable: true },
  resource_type: { pieces: quoted('resource_type'), checked: 'text' },
  seq: { pieces: [expr('seq::text')], checked: 'notNull' },
  user_agent: { pieces: orNull(`'"' || user_agent || '"'`), checked: 'text', nullable: true },
  user_id: { pieces: COLUMN_JSON.user_id },
};

/** The pieces as one `a || b || …`, neighbouring raw JSON joined into one literal. */
function concatenation(pieces: Piece[]): string {
  const parts: string[] = [];
  let literal = '';
  for (const p of pieces) {
    if ('json' in p) {
      literal += p.json;
      continue;
    }
    if (literal) parts.push(`'${literal.replaceAll("'", "''")}'`);
    literal = '';
    parts.push(p.sql);
  }
  if (literal) parts.push(`'${literal.replaceAll("'", "''")}'`);
  return parts.join(' || ');
}

const objectSql = (columns: readonly AuditColumn[], leading: string, valueOf: (c: AuditColumn) => Piece[]) =>
  concatenation([json(`{${leading}`), ...columns.flatMap((c, i) => [json(`${i > 0 ? ',' : ''}"${c}":`), ...valueOf(c)]), json('}')]);

/**
 * One SQL text expression for a JSON object of these columns, keys in the order given, with no whitespace;
 * `leading` is raw JSON placed before the first column (e.g. `"type":"record",`). Never NULL.
 *
 * The text is JSON.stringify's for every row. A row whose text columns hold nothing JSON escapes and no NULL
 * the schema forbids (what the service writes, in practice always) takes the plain form, where a text value
 * between quotes is already its JSON; any other row takes the to_json form. A check over the text columns
 * decides, so a value can never pass for another's escaped form (a stored `a\"b` for a hashed `a"b`). For
 * text that is only hashed (`hashedOnly`) the check looks for `"` and `\` alone, at half the cost of a
 * regular expression: a control character left raw in the plain form can only make the text differ from
 * every canonical text, whose control characters are all escaped, and a record that does not match is decided
 * by the service.
 */
export function recordJsonSql(columns: readonly AuditColumn[], options: { leading?: string; hashedOnly?: boolean } = {}): string {
  const leading = options.leading ?? '';
  const exact = objectSql(columns, leading, (c) => COLUMN_JSON[c]);
  const texts = columns.filter((c) => PLAIN_JSON[c].checked === 'text');
  const notNull = columns.filter((c) => PLAIN_JSON[c].checked === 'notNull');
  if (texts.length === 0) return exact;
  const plain = objectSql(columns, leading, (c) => PLAIN_JSON[c].pieces);
  const joined = `(${texts.map((c) => (PLAIN_JSON[c].nullable ? `coalesce(${c}, '')` : c)).join(' || ')})`;
  const plainText = options.hashedOnly ? `strpos(${joined}, '"') + strpos(${joined}, '\\') = 0` : `${joined} !~ '[\\x01-\\x1f"\\\\]'`;
  const plainWhen = [plainText, ...notNull.map((c) => `${c} is not null`)].join(' and ');
  return `case when ${plainWhen} then ${plain} else ${exact} end`;
}
