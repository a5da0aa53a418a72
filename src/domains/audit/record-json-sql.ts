import { isoTimestampSql } from '../../lib/sql.js';

/**
 * Each audit_records column as the JSON text of its value, built by PostgreSQL: text through to_json
 * (JSON.stringify's escaping, null as null), uuids and seq as they print, created_at as Date#toISOString()
 * prints it, details as stored (json holding the canonical text the chainer hashed).
 */
const COLUMN_JSON = {
  action: 'to_json(action)::text',
  actor_type: 'to_json(actor_type)::text',
  chain_id: 'to_json(chain_id)::text',
  created_at: `'"' || ${isoTimestampSql('created_at')} || '"'`,
  current_hash: 'to_json(current_hash)::text',
  details: 'details::text',
  id: `'"' || id || '"'`,
  ip_address: `coalesce(to_json(ip_address)::text, 'null')`,
  organization_id: `coalesce('"' || organization_id || '"', 'null')`,
  previous_hash: 'to_json(previous_hash)::text',
  request_id: `coalesce(to_json(request_id)::text, 'null')`,
  resource_id: `coalesce(to_json(resource_id)::text, 'null')`,
  resource_type: 'to_json(resource_type)::text',
  seq: 'seq::text',
  user_agent: `coalesce(to_json(user_agent)::text, 'null')`,
  user_id: `coalesce('"' || user_id || '"', 'null')`,
} as const;

export type AuditColumn = keyof typeof COLUMN_JSON;

/**
 * One SQL text expression for a JSON object of these columns, keys in the order given, with no whitespace;
 * `leading` is raw JSON placed before the first column (e.g. `"type":"record",`).
 */
export function recordJsonSql(columns: readonly AuditColumn[], leading = ''): string {
  return `'{${leading}' || ${columns.map((c, i) => `'${i > 0 ? ',' : ''}"${c}":' || ${COLUMN_JSON[c]}`).join(' || ')} || '}'`;
}
