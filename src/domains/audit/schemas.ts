import { z } from 'zod';
import type { AuditRecordRow } from '../../db/schema/audit.js';
import { hashedFieldsOf } from './chain.js';
import { ACTOR_TYPES, AUDIT_ACTIONS, AUDIT_RESOURCE_TYPES } from '../../lib/audit/actions.js';
import { FAILURE_KINDS } from '../../lib/audit/verify.js';
import { pageInput, pageOf } from '../../lib/pagination.js';

export const AuditRecordDto = z
  .object({
    id: z.uuid(),
    chain_id: z.string(),
    seq: z.number().int(),
    organization_id: z.uuid().nullable(),
    action: z.enum(AUDIT_ACTIONS),
    resource_type: z.enum(AUDIT_RESOURCE_TYPES),
    resource_id: z.string().nullable(),
    user_id: z.uuid().nullable(),
    actor_type: z.enum(ACTOR_TYPES),
    details: z.record(z.string(), z.unknown()),
    ip_address: z.string().nullable(),
    user_agent: z.string().nullable(),
    request_id: z.string().nullable(),
    created_at: z.iso.datetime(),
    previous_hash: z.string(),
    current_hash: z.string(),
  })
  .meta({ id: 'AuditRecord' });
export type AuditRecordDto = z.infer<typeof AuditRecordDto>;

/** The DTO is exactly the hashed fields plus current_hash (docs/audit.md's record table). */
export const toAuditRecordDto = (r: AuditRecordRow): AuditRecordDto => ({ ...hashedFieldsOf(r), current_hash: r.currentHash }) as AuditRecordDto;

/** A chain selector: an organisation id, or "platform" for the platform chain (super admins only). */
export const ChainSelector = z.union([z.uuid(), z.literal('platform')]);

export const AuditFilters = {
  action: z.enum(AUDIT_ACTIONS).optional(),
  resource_type: z.enum(AUDIT_RESOURCE_TYPES).optional(),
  resource_id: z.string().max(200).optional(),
  user_id: z.uuid().optional(),
  from: z.iso.datetime({ offset: true }).optional().describe('Inclusive lower bound on created_at'),
  to: z.iso.datetime({ offset: true }).optional().describe('Exclusive upper bound on created_at'),
  search: z.string().trim().min(1).max(200).optional().describe('Matches resource id, request id, IP address or details'),
  organization_id: ChainSelector.optional().describe('Super admins: an organisation id or "platform"'),
};
export const ListAuditInput = z.strictObject({ ...pageInput, ...AuditFilters });
export type ListAuditInput = z.infer<typeof ListAuditInput>;
export type AuditFilterInput = Omit<ListAuditInput, 'limit' | 'cursor'>;
export const AuditPage = pageOf(AuditRecordDto).meta({ id: 'AuditPage' });

export const AuditId = z.strictObject({ id: z.uuid('must be a UUID') });

export const VerifyInput = z.strictObject({
  from_seq: z.number().int().min(1).optional(),
  to_seq: z.number().int().min(1).optional(),
  organization_id: ChainSelector.optional().describe('Super admins: verify another organisation or "platform"'),
});
export type VerifyInput = z.infer<typeof VerifyInput>;

export const VerifyResult = z
  .object({
    ok: z.boolean(),
    chain_id: z.string(),
    range: z.object({ from_seq: z.number().int(), to_seq: z.number().int() }),
    checked: z.number().int(),
    head: z.object({ seq: z.number().int(), hash: z.string() }),
    checkpoints_checked: z.number().int(),
    first_failure: z
      .object({ seq: z.number().int(), kind: z.enum(FAILURE_KINDS), expected: z.string().nullable(), actual: z.string().nullable() })
      .nullable(),
  })
  .meta({ id: 'AuditVerifyResult' });

export const PublicKeysDto = z
  .object({
    keys: z.array(z.object({ key_id: z.string(), algorithm: z.literal('Ed25519'), public_key_pem: z.string(), current: z.boolean() })),
  })
  .meta({ id: 'AuditPublicKeys' });
