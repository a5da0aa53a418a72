import { z } from 'zod';
import { PROJECT_ROLES, PROJECT_STATUSES, type ProjectMemberRow, type ProjectRow } from '../../db/schema/projects.js';
import type { UserRow } from '../../db/schema/users.js';
import { pageInput, pageOf } from '../../lib/pagination.js';
import { acceptsJsonText } from '../../lib/json-text.js';

export const ProjectRoleSchema = z.enum(PROJECT_ROLES).describe('Project role');

/** A bounded, validated settings object: never free-form JSON. */
export const ProjectSettings = z
  .strictObject({
    icon: z.string().trim().min(1).max(64).optional(),
    environment: z.enum(['development', 'staging', 'production']).optional(),
    tags: z
      .array(z.strictObject({ name: z.string().trim().min(1).max(40), color: z.string().regex(/^#[0-9A-Fa-f]{6}$/, 'must be #RRGGBB') }))
      .max(20)
      .optional(),
  })
  .meta({ id: 'ProjectSettings' });

export const ProjectDto = z
  .object({
    id: z.uuid(),
    name: z.string(),
    description: z.string(),
    organization_id: z.uuid(),
    owner_id: z.uuid(),
    settings: ProjectSettings,
    status: z.enum(PROJECT_STATUSES),
    version: z.number().int().describe('Changes on every update; sent as the ETag'),
    created_at: z.iso.datetime(),
    updated_at: z.iso.datetime(),
  })
  .meta({ id: 'Project' });
export type ProjectDto = z.infer<typeof ProjectDto>;

export const toProjectDto = (p: ProjectRow): ProjectDto => ({
  id: p.id,
  name: p.name,
  description: p.description,
  organization_id: p.organizationId,
  owner_id: p.ownerId,
  settings: p.settings,
  status: p.status,
  version: p.version,
  created_at: p.createdAt.toISOString(),
  updated_at: p.updatedAt.toISOString(),
});

const ProjectName = z.string().trim().min(1, 'must not be empty').max(120);
const Description = z.string().trim().max(2000);
const ExpectedVersion = z.number().int().min(1).optional().describe('Fail with 412 unless the project is at this version (REST: If-Match)');

export const ProjectId = z.strictObject({ id: z.uuid('must be a UUID') });
export const ListProjectsInput = z.strictObject({
  ...pageInput,
  search: z.string().trim().min(1).max(200).optional().describe('Matches the name, case-insensitively'),
  status: z.enum(PROJECT_STATUSES).default('active'),
});
export type ListProjectsInput = z.infer<typeof ListProjectsInput>;
export const ProjectPage = acceptsJsonText(pageOf(ProjectDto).meta({ id: 'ProjectPage' }));
export type ProjectPage = z.output<typeof ProjectPage>;

export const CreateProjectInput = z.strictObject({ name: ProjectName, description: Description.default(''), settings: ProjectSettings.default({}) });
export type CreateProjectInput = z.infer<typeof CreateProjectInput>;

export const UpdateProjectInput = z.strictObject({
  id: z.uuid('must be a UUID'),
  name: ProjectName.optional(),
  description: Description.optional(),
  settings: ProjectSettings.optional(),
  expected_version: ExpectedVersion,
});
export type UpdateProjectInput = z.infer<typeof UpdateProjectInput>;

export const DeleteProjectInput = z.strictObject({ id: z.uuid('must be a UUID'), expected_version: ExpectedVersion });

export const MemberDto = z
  .object({
    project_id: z.uuid(),
    user_id: z.uuid(),
    role: ProjectRoleSchema,
    email: z.string(),
    name: z.string(),
    created_at: z.iso.datetime(),
    updated_at: z.iso.datetime(),
  })
  .meta({ id: 'ProjectMember' });
export type MemberDto = z.infer<typeof MemberDto>;

export const toMemberDto = (m: ProjectMemberRow, u: Pick<UserRow, 'email' | 'name'>): MemberDto => ({
  project_id: m.projectId,
  user_id: m.userId,
  role: m.role,
  email: u.email,
  name: u.name,
  created_at: m.createdAt.toISOString(),
  updated_at: m.updatedAt.toISOString(),
});

export const ListMembersInput = z.strictObject({ id: z.uuid('must be a UUID'), ...pageInput, role: ProjectRoleSchema.optional() });
export type ListMembersInput = z.infer<typeof ListMembersInput>;
export const MemberPage = pageOf(MemberDto).meta({ id: 'ProjectMemberPage' });

export const AddMemberInput = z.strictObject({ id: z.uuid('must be a UUID'), user_id: z.uuid('must be a UUID'), role: ProjectRoleSchema });
export type AddMemberInput = z.infer<typeof AddMemberInput>;
export const UpdateMemberInput = AddMemberInput;
export const RemoveMemberInput = z.strictObject({ id: z.uuid('must be a UUID'), user_id: z.uuid('must be a UUID') });
