import { router } from '../../trpc/init.js';
import { permissionProcedure } from '../../trpc/procedures.js';
import { CreateUserInput, ListUsersInput, UpdateUserInput, UserDto, UserId, UserPage, UserRolesDto } from './schemas.js';
import * as users from './service.js';

const tags = ['users'];

export const usersRouter = router({
  list: permissionProcedure('user:view')
    .meta({ openapi: { method: 'GET', path: '/users', tags, summary: 'List users of the organisation' } })
    .input(ListUsersInput)
    .output(UserPage)
    .query(({ ctx, input }) => users.listUsers(ctx.svc, input)),

  create: permissionProcedure('user:manage')
    .meta({
      openapi: { method: 'POST', path: '/users', tags, summary: 'Create a user (invited when no password is given)' },
      successStatus: 201,
      errors: [404, 409],
    })
    .input(CreateUserInput)
    .output(UserDto)
    .mutation(({ ctx, input }) => users.createUser(ctx.svc, input)),

  get: permissionProcedure('user:view')
    .meta({ openapi: { method: 'GET', path: '/users/{id}', tags, summary: 'Get a user' } })
    .input(UserId)
    .output(UserDto)
    .query(({ ctx, input }) => users.getUser(ctx.svc, input.id)),

  update: permissionProcedure('user:manage')
    .meta({ openapi: { method: 'PUT', path: '/users/{id}', tags, summary: 'Update name, role or active state' }, errors: [409] })
    .input(UpdateUserInput)
    .output(UserDto)
    .mutation(({ ctx, input }) => users.updateUser(ctx.svc, input)),

  delete: permissionProcedure('user:manage')
    .meta({ openapi: { method: 'DELETE', path: '/users/{id}', tags, summary: 'Deactivate a user (soft delete) and revoke their sessions' }, errors: [409] })
    .input(UserId)
    .output(UserDto)
    .mutation(({ ctx, input }) => users.deactivateUser(ctx.svc, input.id)),

  roles: permissionProcedure('user:view')
    .meta({ openapi: { method: 'GET', path: '/users/{id}/roles', tags, summary: 'Role, effective permissions and project memberships' } })
    .input(UserId)
    .output(UserRolesDto)
    .query(({ ctx, input }) => users.userRoles(ctx.svc, input.id)),
});
