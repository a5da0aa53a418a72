import { z } from 'zod';
import type { CredentialRow } from '../../db/schema/credentials.js';
import { pageInput, pageOf } from '../../lib/pagination.js';
import { CREDENTIAL_KIND_NAMES } from './kinds.js';

export const CredentialKindSchema = z.enum(CREDENTIAL_KIND_NAMES);

/** What a read shows: plain fields and masks of secrets; never ciphertext, never plaintext. */
export const CredentialDto = z
  .object({
    id: z.uuid(),
    organization_id: z.uuid(),
    project_id: z.uuid().nullable(),
    kind: CredentialKindSchema,
    name: z.string(),
    fields: z.record(z.string(), z.unknown()).describe('Non-secret values'),
    masked: z.record(z.string(), z.string()).describe('Secret values, masked (at most the last 4 characters)'),
    status: z.enum(['ok', 'needs_reentry']).describe('needs_reentry: the key that protects the secret is not loaded'),
    version: z.number().int(),
    created_at: z.iso.datetime(),
    updated_at: z.iso.datetime(),
    last_used_at: z.iso.datetime().nullable(),
  })
  .meta({ id: 'Credential' });
export type CredentialDto = z.infer<typeof CredentialDto>;

export const toCredentialDto = (c: CredentialRow, keyLoaded: boolean): CredentialDto => ({
  id: c.id,
  organization_id: c.organizationId,
  project_id: c.projectId,
  kind: c.kind as CredentialDto['kind'],
  name: c.name,
  fields: c.fields,
  masked: c.masks,
  status: keyLoaded ? 'ok' : 'needs_reentry',
  version: c.version,
  created_at: c.createdAt.toISOString(),
  updated_at: c.updatedAt.toISOString(),
  last_used_at: c.lastUsedAt?.toISOString() ?? null,
});

const Values = z
  .record(z.string().max(100), z.union([z.string(), z.record(z.string(), z.string())]))
  .describe('The kind’s fields; for a secret field, sending back its mask keeps the stored value');

export const ListCredentialsInput = z.strictObject({
  ...pageInput,
  kind: CredentialKindSchema.optional(),
  project_id: z.uuid().optional(),
  search: z.string().trim().min(1).max(200).optional(),
});
export type ListCredentialsInput = z.infer<typeof ListCredentialsInput>;
export const CredentialPage = pageOf(CredentialDto).meta({ id: 'CredentialPage' });

export const CreateCredentialInput = z.strictObject({
  name: z.string().trim().min(1).max(120),
  kind: CredentialKindSchema,
  project_id: z.uuid().optional().describe('Scope the credential to a project (its credential:manage then decides)'),
  values: Values,
});
export type CreateCredentialInput = z.infer<typeof CreateCredentialInput>;

export const UpdateCredentialInput = z.strictObject({
  id: z.uuid('must be a UUID'),
  name: z.string().trim().min(1).max(120).optional(),
  values: Values.optional(),
});
export type UpdateCredentialInput = z.infer<typeof UpdateCredentialInput>;

export const CredentialId = z.strictObject({ id: z.uuid('must be a UUID') });

export const RewrapResult = z
  .object({ current_key_id: z.string(), rewrapped: z.number().int(), remaining: z.number().int(), missing_key: z.number().int() })
  .meta({ id: 'RewrapResult' });
