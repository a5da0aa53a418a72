import { router } from '../../trpc/init.js';
import { permissionProcedure } from '../../trpc/procedures.js';
import { CreateOrganizationInput, ListOrganizationsInput, OrganizationDto, OrganizationPage } from './schemas.js';
import * as organizations from './service.js';

const tags = ['organizations'];

export const organizationsRouter = router({
  list: permissionProcedure('organization:view')
    .meta({ openapi: { method: 'GET', path: '/organizations', tags, summary: 'List organisations (super admin)' } })
    .input(ListOrganizationsInput)
    .output(OrganizationPage)
    .query(({ ctx, input }) => organizations.listOrganizations(ctx.svc, input)),

  create: permissionProcedure('organization:manage')
    .meta({
      openapi: { method: 'POST', path: '/organizations', tags, summary: 'Create an organisation (super admin)' },
      successStatus: 201,
      errors: [409],
    })
    .input(CreateOrganizationInput)
    .output(OrganizationDto)
    .mutation(({ ctx, input }) => organizations.createOrganization(ctx.svc, input)),
});
