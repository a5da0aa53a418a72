import { z } from 'zod';

export const AUDIT_ACTIONS = [
  'create',
  'update',
  'delete',
  'login',
  'login_failed',
  'logout',
  'token_refresh',
  'refresh_reuse_detected',
  'access_denied',
  'data_export',
  'audit_verify',
  'secret_access',
  'key_rotation',
] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];

export const AUDIT_RESOURCE_TYPES = ['user', 'organization', 'session', 'audit', 'operation', 'project', 'project_member', 'credential', 'encryption_key'] as const;
export type AuditResourceType = (typeof AUDIT_RESOURCE_TYPES)[number];

export const ACTOR_TYPES = ['user', 'system', 'service'] as const;
export type ActorType = (typeof ACTOR_TYPES)[number];

const value = z.json();
const snapshot = z.record(z.string().max(100), value);

export const LOGIN_FAILURE_REASONS = ['unknown_email', 'bad_password', 'no_password', 'deactivated', 'idp_rejected'] as const;
export type LoginFailureReason = (typeof LOGIN_FAILURE_REASONS)[number];

/** The shape of `details` for each action; appending anything else is a programming error and rolls back. */
export const AUDIT_DETAILS: Record<AuditAction, z.ZodType<Record<string, unknown>>> = {
  create: z.strictObject({ after: snapshot }),
  update: z.strictObject({
    changes: z.record(z.string().max(100), z.union([z.strictObject({ old: value, new: value }), z.literal('[redacted]')])),
  }),
  delete: z.strictObject({ before: snapshot }),
  login: z.strictObject({ family_id: z.string().max(200), method: z.enum(['password', 'oauth']).optional() }),
  login_failed: z.strictObject({ reason: z.enum(LOGIN_FAILURE_REASONS), email: z.string().max(254) }),
  logout: z.strictObject({ family_revoked: z.boolean() }),
  token_refresh: z.strictObject({ family_id: z.string().max(200) }),
  refresh_reuse_detected: z.strictObject({ family_id: z.string().max(200) }),
  access_denied: z.strictObject({ permission: z.string().max(100), operation: z.string().max(200) }),
  data_export: z.strictObject({ format: z.enum(['csv', 'ndjson']), filters: snapshot, chain_id: z.string(), head_seq: z.number().int() }),
  secret_access: z.strictObject({ requested_by: z.string().max(200), version: z.number().int() }),
  key_rotation: z.strictObject({ to_key_id: z.string().max(100), rewrapped: z.number().int(), remaining: z.number().int() }),
  audit_verify: z.strictObject({ chain_id: z.string(), from_seq: z.number().int(), to_seq: z.number().int(), ok: z.boolean(), first_failure_kind: z.string().nullable() }),
};

const SECRET_KEY = /pass(word)?|secret|token|api[_-]?key|private[_-]?key|credential|kubeconfig|authorization|cookie/i;

/** Replaces the value of every key that names a secret, at any depth, before details are validated and hashed. */
export function redactSecrets<T>(value: T): T {
  if (Array.isArray(value)) return value.map(redactSecrets) as T;
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value as Record<string, unknown>).map(([k, v]) => [k, SECRET_KEY.test(k) ? '[redacted]' : redactSecrets(v)]),
    ) as T;
  }
  return value;
}
