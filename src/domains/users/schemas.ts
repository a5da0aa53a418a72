import { z } from 'zod';
import { PROJECT_ROLES } from '../../db/schema/projects.js';
import { ROLES, USER_STATUSES, type UserRow } from '../../db/schema/users.js';
import { pageInput, pageOf } from '../../lib/pagination.js';
import { PERMISSIONS } from '../../lib/permissions.js';

export const Email = z
  .email('must be an email address')
  .max(254)
  .transform((v) => v.trim().toLowerCase())
  .describe('Email address (case-insensitive, stored lower-case)');
export const PersonName = z.string().trim().min(1, 'must not be empty').max(120).describe('Display name');
export const RoleSchema = z.enum(ROLES).describe('Organisation role');
export const UserStatusSchema = z.enum(USER_STATUSES);
export const Password = z.string().max(1024).describe('Password (at least 12 characters)');

export const UserDto = z
  .object({
    id: z.uuid(),
    email: z.string(),
    name: z.string(),
    keycloak_id: z.string().nullable(),
    organization_id: z.uuid(),
    role: RoleSchema,
    status: UserStatusSchema,
    is_active: z.boolean(),
    created_at: z.iso.datetime(),
    updated_at: z.iso.datetime(),
  })
  .meta({ id: 'User' });
export type UserDto = z.infer<typeof UserDto>;

export function toUserDto(u: UserRow): UserDto {
  return {
    id: u.id,
    email: u.email,
    name: u.name,
    keycloak_id: u.keycloakId,
    organization_id: u.organizationId,
    role: u.role,
    status: u.status,
    is_active: u.isActive,
    created_at: u.createdAt.toISOString(),
    updated_at: u.updatedAt.toISOString(),
  };
}

export const UserId = z.strictObject({ id: z.uuid('must be a UUID') });

export const ListUsersInput = z.strictObject({
  ...pageInput,
  role: RoleSchema.optional(),
  status: UserStatusSchema.optional(),
  search: z.string().trim().min(1).max(200).optional().describe('Matches name or email, case-insensitively'),
  organization_id: z.uuid().optional().describe('Super admins only: list another organisation'),
});
export type ListUsersInput = z.infer<typeof ListUsersInput>;
export const UserPage = pageOf(UserDto).meta({ id: 'UserPage' });

export const CreateUserInput = z.strictObject({
  email: Email,
  name: PersonName,
  role: RoleSchema.default('developer'),
  password: Password.optional().describe('Without a password the user is created as invited'),
  organization_id: z.uuid().optional().describe('Super admins only: create the user in another organisation'),
});
export type CreateUserInput = z.infer<typeof CreateUserInput>;

export const UpdateUserInput = z.strictObject({
  id: z.uuid('must be a UUID'),
  name: PersonName.optional(),
  role: RoleSchema.optional(),
  is_active: z.boolean().optional().describe('false deactivates the user; true reactivates'),
});
export type UpdateUserInput = z.infer<typeof UpdateUserInput>;

export const UserRolesDto = z
  .object({
    user_id: z.uuid(),
    role: RoleSchema,
    permissions: z.array(z.enum(PERMISSIONS)),
    project_memberships: z.array(z.object({ project_id: z.uuid(), role: z.enum(PROJECT_ROLES) })),
  })
  .meta({ id: 'UserRoles' });
