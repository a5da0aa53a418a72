import { z } from 'zod';
import { PERMISSIONS } from '../../lib/permissions.js';
import { OrganizationDto } from '../organizations/schemas.js';
import { Email, RoleSchema, UserDto } from '../users/schemas.js';

export const LoginInput = z.strictObject({
  email: Email,
  password: z.string().min(1, 'is required').max(1024),
});
export type LoginInput = z.infer<typeof LoginInput>;

export const RefreshInput = z.strictObject({ refresh_token: z.string().min(1, 'is required').max(512) });
export type RefreshInput = z.infer<typeof RefreshInput>;

/** Field names of a Keycloak token response, so clients work unchanged in both identity modes. */
export const TokenResponse = z
  .object({
    access_token: z.string(),
    refresh_token: z.string(),
    token_type: z.literal('Bearer'),
    expires_in: z.number().int().describe('Seconds until the access token expires'),
    refresh_expires_in: z.number().int().describe('Seconds until the refresh token expires'),
    user: UserDto,
  })
  .meta({ id: 'TokenResponse' });
export type TokenResponse = z.infer<typeof TokenResponse>;

export const LogoutResult = z.object({ logged_out: z.literal(true) }).meta({ id: 'LogoutResult' });

export const MeDto = z
  .object({
    user: UserDto,
    organization: OrganizationDto,
    role: RoleSchema,
    permissions: z.array(z.enum(PERMISSIONS)),
  })
  .meta({ id: 'Me' });
