import crypto, { createHash } from 'node:crypto';

/**
 * The audit chain's byte-level definitions. docs/audit.md specifies the same thing in prose so a third party
 * can recompute every hash; this module has no dependency on the database or the service, and the offline
 * verifier (scripts/audit-verify.ts) uses it as is.
 */

/** previous_hash of the first record of every chain. */
export const GENESIS_HASH = '0'.repeat(64);

/** RFC 8785 (JSON Canonicalization Scheme): sorted keys, ECMAScript number and string serialisation, no whitespace. */
export function canonicalJson(value: unknown): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError('canonical JSON has no representation for a non-finite number');
      return JSON.stringify(value);
    case 'string':
      return JSON.stringify(value);
    case 'object': {
      if (Array.isArray(value)) {
        let out = '[';
        for (let i = 0; i < value.length; i++) out += (i > 0 ? ',' : '') + canonicalJson(value[i]);
        return out + ']';
      }
      const o = value as Record<string, unknown>;
      // Default sort compares UTF-16 code units, as RFC 8785 requires.
      const keys = Object.keys(o).sort();
      let out = '{';
      let first = true;
      for (const k of keys) {
        const v = o[k];
        if (v === undefined) continue;
        out += (first ? '' : ',') + JSON.stringify(k) + ':' + canonicalJson(v);
        first = false;
      }
      return out + '}';
    }
    default:
      throw new TypeError(`canonical JSON has no representation for ${typeof value}`);
  }
}

/** Every field of a record except current_hash: exactly what the hash covers. */
export interface HashedAuditFields {
  chain_id: string;
  seq: number;
  previous_hash: string;
  id: string;
  organization_id: string | null;
  action: string;
  resource_type: string;
  resource_id: string | null;
  user_id: string | null;
  actor_type: string;
  details: Record<string, unknown>;
  ip_address: string | null;
  user_agent: string | null;
  request_id: string | null;
  /** ISO-8601 UTC with milliseconds, e.g. 2026-11-26T20:28:13.046Z. */
  created_at: string;
}

const oneShot = (crypto as unknown as { hash?: (alg: string, data: string, enc: 'hex') => string }).hash;
export const sha256Hex = oneShot ? (text: string) => oneShot('sha256', text, 'hex') : (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');

const HASHED_KEYS = 15;
const q = (s: string | null) => (s === null ? 'null' : JSON.stringify(s));

/** The hashed fields but details, whose canonical text a caller already has. */
export type AuditFieldsBesideDetails = Omit<HashedAuditFields, 'details'>;

/** Every field but details has the type HashedAuditFields gives it (as rows from audit tables do). */
function wellFormed(f: AuditFieldsBesideDetails, keys: number): boolean {
  return (
    Object.keys(f).length === keys &&
    typeof f.seq === 'number' && typeof f.chain_id === 'string' && typeof f.previous_hash === 'string' && typeof f.id === 'string' &&
    typeof f.action === 'string' && typeof f.resource_type === 'string' && typeof f.actor_type === 'string' && typeof f.created_at === 'string' &&
    (f.organization_id === null || typeof f.organization_id === 'string') && (f.resource_id === null || typeof f.resource_id === 'string') &&
    (f.user_id === null || typeof f.user_id === 'string') && (f.ip_address === null || typeof f.ip_address === 'string') &&
    (f.user_agent === null || typeof f.user_agent === 'string') && (f.request_id === null || typeof f.request_id === 'string')
  );
}

/** canonicalJson of a well-formed record, without sorting: the keys of HashedAuditFields in their canonical order. */
function joinCanonical(f: AuditFieldsBesideDetails, detailsJson: string): string {
  return (
    '{"action":' + q(f.action) + ',"actor_type":' + q(f.actor_type) + ',"chain_id":' + q(f.chain_id) + ',"created_at":' + q(f.created_at) +
    ',"details":' + detailsJson + ',"id":' + q(f.id) + ',"ip_address":' + q(f.ip_address) + ',"organization_id":' + q(f.organization_id) +
    ',"previous_hash":' + q(f.previous_hash) + ',"request_id":' + q(f.request_id) + ',"resource_id":' + q(f.resource_id) +
    ',"resource_type":' + q(f.resource_type) + ',"seq":' + canonicalJson(f.seq) + ',"user_agent":' + q(f.user_agent) + ',"user_id":' + q(f.user_id) + '}'
  );
}

/**
 * canonicalJson(fields), fast for a well-formed record. Anything else (extra or missing keys, odd types, as
 * in a tampered export line) takes the generic path, so the bytes hashed are always exactly canonicalJson's.
 */
export function canonicalAuditRecord(f: HashedAuditFields): string {
  if (!wellFormed(f, HASHED_KEYS) || f.details === null || typeof f.details !== 'object') return canonicalJson(f);
  return joinCanonical(f, canonicalJson(f.details));
}

export function hashAuditRecord(fields: HashedAuditFields): string {
  return sha256Hex(canonicalAuditRecord(fields));
}

/**
 * hashAuditRecord for a record whose details the caller holds as their canonical text (the chainer, which
 * stores that text as it is): the text is placed as given, so it must be canonicalJson of the details.
 */
export function hashAuditRecordWithDetailsText(fields: AuditFieldsBesideDetails, detailsJson: string): string {
  if (!wellFormed(fields, HASHED_KEYS - 1)) return sha256Hex(canonicalJson({ ...fields, details: JSON.parse(detailsJson) as unknown }));
  return sha256Hex(joinCanonical(fields, detailsJson));
}

export interface CheckpointStatement {
  chain_id: string;
  seq: number;
  head_hash: string;
  signed_at: string;
  key_id: string;
}

/** The bytes an Ed25519 checkpoint signature covers. */
export function checkpointMessage(c: CheckpointStatement): Buffer {
  return Buffer.from(
    canonicalJson({ type: 'budapp-audit-checkpoint/v1', chain_id: c.chain_id, seq: c.seq, head_hash: c.head_hash, signed_at: c.signed_at, key_id: c.key_id }),
    'utf8',
  );
}
