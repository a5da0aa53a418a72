import { z } from 'zod';
import { router } from '../../trpc/init.js';
import { authedProcedure, permissionProcedure, publicProcedure } from '../../trpc/procedures.js';
import { AuditId, AuditPage, AuditRecordDto, ListAuditInput, PublicKeysDto, VerifyInput, VerifyResult } from './schemas.js';
import * as audit from './service.js';

const tags = ['audit'];

export const auditRouter = router({
  list: authedProcedure
    .meta({
      openapi: {
        method: 'GET',
        path: '/audit',
        tags,
        summary: 'List audit records, newest first',
        description: 'Admins (audit:view) see their organisation, super admins any organisation, everyone else the records where they are the actor.',
      },
    })
    .input(ListAuditInput)
    .output(AuditPage)
    .query(({ ctx, input }) => audit.listAudit(ctx.svc, input)),

  publicKeys: publicProcedure
    .meta({ openapi: { method: 'GET', path: '/audit/public-keys', tags, summary: 'Public keys that verify audit checkpoints and export manifests', protect: false } })
    .input(z.strictObject({}))
    .output(PublicKeysDto)
    .query(({ ctx }) => ({ keys: ctx.deps.auditSigner.publicKeys() })),

  get: authedProcedure
    .meta({ openapi: { method: 'GET', path: '/audit/{id}', tags, summary: 'Get an audit record' } })
    .input(AuditId)
    .output(AuditRecordDto)
    .query(({ ctx, input }) => audit.getAudit(ctx.svc, input.id)),

  verify: permissionProcedure('audit:view')
    .meta({ openapi: { method: 'POST', path: '/audit/verify', tags, summary: 'Verify the hash chain and its signed checkpoints over a range' } })
    .input(VerifyInput)
    .output(VerifyResult)
    .mutation(({ ctx, input }) => audit.verifyChain(ctx.svc, input)),
});
