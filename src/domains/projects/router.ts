import { router } from '../../trpc/init.js';
import { permissionProcedure, projectProcedure } from '../../trpc/procedures.js';
import {
  AddMemberInput,
  CreateProjectInput,
  DeleteProjectInput,
  ListMembersInput,
  ListProjectsInput,
  MemberDto,
  MemberPage,
  ProjectDto,
  ProjectId,
  ProjectPage,
  RemoveMemberInput,
  UpdateMemberInput,
  UpdateProjectInput,
} from './schemas.js';
import * as projects from './service.js';
import { toProjectDto } from './schemas.js';

const tags = ['projects'];

export const projectsRouter = router({
  list: permissionProcedure('project:view')
    .meta({ openapi: { method: 'GET', path: '/projects', tags, summary: 'List the projects the caller may see' } })
    .input(ListProjectsInput)
    .output(ProjectPage)
    .query(({ ctx, input }) => projects.listProjects(ctx.svc, input)),

  create: permissionProcedure('project:manage')
    .meta({
      openapi: { method: 'POST', path: '/projects', tags, summary: 'Create a project; the creator becomes its owner' },
      successStatus: 201,
      errors: [409, 422],
      idempotent: true,
    })
    .input(CreateProjectInput)
    .output(ProjectDto)
    .mutation(({ ctx, input }) => projects.createProject(ctx.svc, input)),

  get: projectProcedure('project:view')
    .meta({ openapi: { method: 'GET', path: '/projects/{id}', tags, summary: 'Get a project (ETag: its version)' } })
    .input(ProjectId)
    .output(ProjectDto)
    .query(({ ctx }) => toProjectDto(ctx.project.project)),

  update: projectProcedure('project:manage')
    .meta({ openapi: { method: 'PUT', path: '/projects/{id}', tags, summary: 'Update name, description or settings (If-Match honoured)' }, errors: [409, 412], ifMatch: true })
    .input(UpdateProjectInput)
    .output(ProjectDto)
    .mutation(({ ctx, input }) => projects.updateProject(ctx.svc, ctx.project, input)),

  delete: projectProcedure('project:manage')
    .meta({ openapi: { method: 'DELETE', path: '/projects/{id}', tags, summary: 'Delete a project (soft; refused while it is in use)' }, errors: [409, 412], ifMatch: true })
    .input(DeleteProjectInput)
    .output(ProjectDto)
    .mutation(({ ctx, input }) => projects.deleteProject(ctx.svc, ctx.project, input.expected_version)),

  members: router({
    list: projectProcedure('project:view')
      .meta({ openapi: { method: 'GET', path: '/projects/{id}/members', tags, summary: 'List project members' } })
      .input(ListMembersInput)
      .output(MemberPage)
      .query(({ ctx, input }) => projects.listMembers(ctx.svc, ctx.project, input)),

    add: projectProcedure('project:manage')
      .meta({
        openapi: { method: 'POST', path: '/projects/{id}/members', tags, summary: 'Add a user of the organisation with a project role' },
        successStatus: 201,
        errors: [409, 422],
        idempotent: true,
      })
      .input(AddMemberInput)
      .output(MemberDto)
      .mutation(({ ctx, input }) => projects.addMember(ctx.svc, ctx.project, input)),

    update: projectProcedure('project:manage')
      .meta({ openapi: { method: 'PUT', path: '/projects/{id}/members/{user_id}', tags, summary: 'Change a member’s project role (never demote the last owner)' }, errors: [409] })
      .input(UpdateMemberInput)
      .output(MemberDto)
      .mutation(({ ctx, input }) => projects.updateMember(ctx.svc, ctx.project, input)),

    remove: projectProcedure('project:manage')
      .meta({ openapi: { method: 'DELETE', path: '/projects/{id}/members/{user_id}', tags, summary: 'Remove a member (never the last owner)' }, errors: [409] })
      .input(RemoveMemberInput)
      .output(MemberDto)
      .mutation(({ ctx, input }) => projects.removeMember(ctx.svc, ctx.project, input.user_id)),
  }),
});
