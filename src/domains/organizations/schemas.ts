import { z } from 'zod';
import type { OrganizationRow } from '../../db/schema/organizations.js';
import { pageInput, pageOf } from '../../lib/pagination.js';

export const OrganizationDto = z
  .object({ id: z.uuid(), name: z.string(), created_at: z.iso.datetime(), updated_at: z.iso.datetime() })
  .meta({ id: 'Organization' });
export type OrganizationDto = z.infer<typeof OrganizationDto>;

export const toOrganizationDto = (o: OrganizationRow): OrganizationDto => ({
  id: o.id,
  name: o.name,
  created_at: o.createdAt.toISOString(),
  updated_at: o.updatedAt.toISOString(),
});

export const ListOrganizationsInput = z.strictObject({ ...pageInput, search: z.string().trim().min(1).max(200).optional() });
export type ListOrganizationsInput = z.infer<typeof ListOrganizationsInput>;
export const OrganizationPage = pageOf(OrganizationDto).meta({ id: 'OrganizationPage' });

export const OrganizationName = z.string().trim().min(1, 'must not be empty').max(120);
export const CreateOrganizationInput = z.strictObject({ name: OrganizationName });
export type CreateOrganizationInput = z.infer<typeof CreateOrganizationInput>;
