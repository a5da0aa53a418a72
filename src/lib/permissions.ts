import type { ProjectRole } from '../db/schema/projects.js';
import type { Role } from '../db/schema/users.js';

/**
 * The permission matrix: the single source of truth for every authorisation check in the service.
 * docs/permissions.md renders this table; test/permissions.test.ts keeps the two in step.
 */
export const PERMISSIONS = [
  'organization:view',
  'organization:manage',
  'user:view',
  'user:manage',
  'project:view',
  'project:manage',
  'model:view',
  'model:manage',
  'endpoint:view',
  'endpoint:manage',
  'cluster:view',
  'cluster:manage',
  'credential:view',
  'credential:manage',
  'audit:view',
  'billing:view',
  'billing:manage',
] as const;

export type Permission = (typeof PERMISSIONS)[number];

const ORG_ADMIN: Permission[] = PERMISSIONS.filter((p) => !p.startsWith('organization:'));

export const ROLE_PERMISSIONS: Record<Role, readonly Permission[]> = {
  super_admin: PERMISSIONS,
  admin: ORG_ADMIN,
  devops: [
    'user:view',
    'project:view',
    'model:view',
    'model:manage',
    'endpoint:view',
    'endpoint:manage',
    'cluster:view',
    'cluster:manage',
    'credential:view',
    'credential:manage',
    'billing:view',
  ],
  developer: [
    'user:view',
    'project:view',
    'project:manage',
    'model:view',
    'endpoint:view',
    'endpoint:manage',
    'cluster:view',
    'credential:view',
  ],
  tester: ['user:view', 'project:view', 'model:view', 'endpoint:view', 'cluster:view'],
};

/** Higher rank may grant and manage lower or equal ranks; nobody grants a role above their own. */
export const ROLE_RANK: Record<Role, number> = { super_admin: 5, admin: 4, devops: 3, developer: 2, tester: 1 };

const ROLE_SETS = new Map<Role, ReadonlySet<Permission>>(
  (Object.keys(ROLE_PERMISSIONS) as Role[]).map((r) => [r, new Set(ROLE_PERMISSIONS[r])]),
);

export function roleHas(role: Role, permission: Permission): boolean {
  return ROLE_SETS.get(role)?.has(permission) ?? false;
}

export function permissionsOf(role: Role): Permission[] {
  return [...ROLE_PERMISSIONS[role]];
}

/** Permissions whose refusal is worth an audit record: changes, organisation administration, the audit trail. */
export function isAdminPermission(permission: Permission): boolean {
  return permission.endsWith(':manage') || permission.startsWith('organization:') || permission === 'audit:view';
}

/** Permissions that can be granted inside one project by a project role. */
export const PROJECT_PERMISSIONS = [
  'project:view',
  'project:manage',
  'endpoint:view',
  'endpoint:manage',
  'credential:view',
  'credential:manage',
] as const satisfies readonly Permission[];
export type ProjectPermission = (typeof PROJECT_PERMISSIONS)[number];

/**
 * Project roles. Inside a project they decide; organisation admins (admin, super_admin) hold every project
 * permission in every project of their organisation without being members.
 */
export const PROJECT_ROLE_PERMISSIONS: Record<ProjectRole, readonly ProjectPermission[]> = {
  owner: PROJECT_PERMISSIONS,
  editor: ['project:view', 'endpoint:view', 'endpoint:manage', 'credential:view', 'credential:manage'],
  viewer: ['project:view', 'endpoint:view', 'credential:view'],
};

export function projectRoleHas(role: ProjectRole, permission: ProjectPermission): boolean {
  return (PROJECT_ROLE_PERMISSIONS[role] as readonly string[]).includes(permission);
}

export const isOrganizationAdmin = (role: Role) => role === 'admin' || role === 'super_admin';
