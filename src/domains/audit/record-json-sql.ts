import { isoTimestampSql } from '../../lib/sql.js';

/** A piece of a record's JSON text: raw JSON, or an SQL expression giving text. */
type Piece = { json: string } | { sql: string };
const json = (text: string): Piece => ({ json: text });
const expr = (text: string): Piece => ({ sql: text });
/** A string value between quotes. */
const quoted = (text: string): Piece[] => [json('"'), expr(text), json('"')];

/**
 * Each audit_records column as the JSON text of its value, built by PostgreSQL: text through to_json
 * (JSON.stringify's escaping, null as null), uuids and seq as they print, created_at as Date#toISOString()
 * prints it, details as stored (json holding the canonical text the chainer hashed).
 */
const COLUMN_JSON = {
  action: [expr('to_json(action)::text')],
  actor_type: [expr('to_json(actor_type)::text')],
  chain_id: [expr('to_json(chain_id)::text')],
  created_at: quoted(isoTimestampSql('created_at')),
  current_hash: [expr('to_json(current_hash)::text')],
  details: [expr('details::text')],
  id: quoted('id::text'),
  ip_address: [expr(`coalesce(to_json(ip_address)::text, 'null')`)],
  organization_id: [expr(`coalesce('"' || organization_id || '"', 'null')`)],
  previous_hash: [expr('to_json(previous_hash)::text')],
  request_id: [expr(`coalesce(to_json(request_id)::text, 'null')`)],
  resource_id: [expr(`coalesce(to_json(resource_id)::text, 'null')`)],
  resource_type: [expr('to_json(resource_type)::text')],
  seq: [expr('seq::text')],
  user_agent: [expr(`coalesce(to_json(user_agent)::text, 'null')`)],
  user_id: [expr(`coalesce('"' || user_id || '"', 'null')`)],
} satisfies Record<string, Piece[]>;

export type AuditColumn = keyof typeof COLUMN_JSON;

/**
 * The text columns as they are when their values hold nothing JSON escapes: between quotes as they stand.
 * to_json looks its argument's type up in the catalogue and escapes character by character on every call;
 * together with the concatenations its form needs, that is about a third of a record's JSON.
 */
const PLAIN_TEXT_JSON: Partial<Record<AuditColumn, { pieces: Piece[]; nullable: boolean }>> = {
  action: { pieces: quoted('action'), nullable: false },
  actor_type: { pieces: quoted('actor_type'), nullable: false },
  chain_id: { pieces: quoted('chain_id'), nullable: false },
  current_hash: { pieces: quoted('current_hash'), nullable: false },
  ip_address: { pieces: [expr(`coalesce('"' || ip_address || '"', 'null')`)], nullable: true },
  previous_hash: { pieces: quoted('previous_hash'), nullable: false },
  request_id: { pieces: [expr(`coalesce('"' || request_id || '"', 'null')`)], nullable: true },
  resource_id: { pieces: [expr(`coalesce('"' || resource_id || '"', 'null')`)], nullable: true },
  resource_type: { pieces: quoted('resource_type'), nullable: false },
  user_agent: { pieces: [expr(`coalesce('"' || user_agent || '"', 'null')`)], nullable: true },
};

/** The pieces as one concatenation, neighbouring raw JSON joined into one literal. */
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
 * `leading` is raw JSON placed before the first column (e.g. `"type":"record",`).
 *
 * The text is JSON.stringify's for every row. A row whose text columns hold nothing JSON escapes (what the
 * service writes, in practice always) takes the plain form, where a text value between quotes is already
 * its JSON; any other row takes the to_json form. A check over the text columns decides, so a value can
 * never pass for another's escaped form (a stored `a\"b` for a hashed `a"b`). For text that is only hashed
 * (`hashedOnly`) the check looks for `"` and `\` alone, at half the cost of a regular expression: a control
 * character left raw in the plain form can only make the text differ from every canonical text, whose
 * control characters are all escaped, and a record that does not match is decided by the service. A NULL
 * where the schema has none (tampering) also takes the to_json form, whose text is then NULL.
 */
export function recordJsonSql(columns: readonly AuditColumn[], options: { leading?: string; hashedOnly?: boolean } = {}): string {
  const leading = options.leading ?? '';
  const exact = objectSql(columns, leading, (c) => COLUMN_JSON[c]);
  const texts = columns.filter((c) => PLAIN_TEXT_JSON[c]);
  if (texts.length === 0) return exact;
  const plain = objectSql(columns, leading, (c) => PLAIN_TEXT_JSON[c]?.pieces ?? COLUMN_JSON[c]);
  const joined = `(${texts.map((c) => (PLAIN_TEXT_JSON[c]!.nullable ? `coalesce(${c}, '')` : c)).join(' || ')})`;
  const plainWhen = options.hashedOnly ? `strpos(${joined}, '"') + strpos(${joined}, '\\') = 0` : `${joined} !~ '[\\x01-\\x1f"\\\\]'`;
  return `case when ${plainWhen} then ${plain} else ${exact} end`;
}
