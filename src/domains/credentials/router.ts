import { router } from '../../trpc/init.js';
import { authedProcedure, permissionProcedure, projectAwareProcedure } from '../../trpc/procedures.js';
import { rewrapAllParallel } from './rewrap.js';
import { CreateCredentialInput, CredentialDto, CredentialId, CredentialPage, ListCredentialsInput, RewrapResult, UpdateCredentialInput } from './schemas.js';
import * as vault from './service.js';
import { z } from 'zod';

const tags = ['credentials'];

export const credentialsRouter = router({
  list: authedProcedure
    .meta({
      openapi: {
        method: 'GET',
        path: '/credentials',
        tags,
        summary: 'List credentials (masked): the organisation’s with credential:view, else those of your projects',
      },
    })
    .input(ListCredentialsInput)
    .output(CredentialPage)
    .query(({ ctx, input }) => vault.listCredentials(ctx.svc, input)),

  create: projectAwareProcedure('credential:manage')
    .meta({
      openapi: { method: 'POST', path: '/credentials', tags, summary: 'Store a provider credential (secrets encrypted; shown masked from now on)' },
      successStatus: 201,
      errors: [404, 409, 422],
      idempotent: true,
    })
    .input(CreateCredentialInput)
    .output(CredentialDto)
    .mutation(({ ctx, input }) => vault.createCredential(ctx.svc, input)),

  rewrap: permissionProcedure('organization:manage')
    .meta({
      openapi: {
        method: 'POST',
        path: '/credentials/rewrap',
        tags,
        summary: 'Re-wrap every data key under the current key-encryption key (super admin; resumable, audited)',
      },
    })
    .input(z.strictObject({}))
    .output(RewrapResult)
    .mutation(async ({ ctx }) => {
      const result = await rewrapAllParallel(ctx.svc);
      return { current_key_id: ctx.svc.deps.keyring.currentId, rewrapped: result.rewrapped, remaining: result.remaining, missing_key: result.missingKey };
    }),

  update: projectAwareProcedure('credential:manage')
    .meta({ openapi: { method: 'PUT', path: '/credentials/{id}', tags, summary: 'Rename or rotate values (a secret sent back as its mask is kept)' }, errors: [409] })
    .input(UpdateCredentialInput)
    .output(CredentialDto)
    .mutation(({ ctx, input }) => vault.updateCredential(ctx.svc, input)),

  delete: projectAwareProcedure('credential:manage')
    .meta({ openapi: { method: 'DELETE', path: '/credentials/{id}', tags, summary: 'Delete a credential (refused while an endpoint or cluster uses it)' }, errors: [409] })
    .input(CredentialId)
    .output(CredentialDto)
    .mutation(({ ctx, input }) => vault.deleteCredential(ctx.svc, input.id)),
});
