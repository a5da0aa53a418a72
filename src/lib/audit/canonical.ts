import { createHash } from 'node:crypto';

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
      if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
      const entries = Object.entries(value as Record<string, unknown>)
        .filter(([, v]) => v !== undefined)
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
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

export const sha256Hex = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');

export function hashAuditRecord(fields: HashedAuditFields): string {
  return sha256Hex(canonicalJson(fields));
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
