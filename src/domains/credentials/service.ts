import { and, count, desc, eq, ilike, inArray, lt, ne, sql, type SQL } from 'drizzle-orm';
import { credentials, type CredentialRow } from '../../db/schema/credentials.js';
import { projectMembers } from '../../db/schema/projects.js';
import { open, seal, SecretUnavailable, type SealedSecret } from '../../lib/crypto/envelope.js';
import { AppError, conflict, forbidden, notFound } from '../../lib/errors.js';
import { decodeCursor, toPage } from '../../lib/pagination.js';
import { roleHas, type ProjectPermission } from '../../lib/permissions.js';
import { likePattern } from '../../lib/sql.js';
import { appendAudit } from '../audit/chain.js';
import { accessAllows, resolveProjectAccess } from '../projects/access.js';
import { projectDependencyChecks } from '../projects/service.js';
import { inTransaction, type ActorCtx, type ServiceCtx } from '../service-ctx.js';
import { secretFieldsOf, splitValues, type CredentialKind } from './kinds.js';
import { toCredentialDto, type CreateCredentialInput, type ListCredentialsInput, type UpdateCredentialInput } from './schemas.js';

/** Binds a ciphertext to its row: copied to another credential, organisation or version, it does not open. */
export const credentialAad = (c: { organizationId: string; id: string; version: number }) => `budapp/credential/v1|${c.organizationId}|${c.id}|${c.version}`;

const sealedOf = (c: CredentialRow): SealedSecret => ({ ciphertext: c.ciphertext, iv: c.iv, tag: c.authTag, wrappedKey: c.wrappedKey, kekId: c.kekId });
const sealedColumns = (s: SealedSecret) => ({ ciphertext: s.ciphertext, iv: s.iv, authTag: s.tag, wrappedKey: s.wrappedKey, kekId: s.kekId });

/**
 * What still uses a credential and so blocks its deletion; endpoints and clusters add their checks here.
 */
export type CredentialDependencyCheck = (ctx: ActorCtx, credentialId: string) => Promise<string | null>;
export const credentialDependencyChecks: CredentialDependencyCheck[] = [];

// Deleting a project is refused while it still holds credentials.
projectDependencyChecks.push(async (ctx, projectId) => {
  const [row] = await ctx.db.select({ n: count() }).from(credentials).where(eq(credentials.projectId, projectId));
  return row && row.n > 0 ? `${row.n} credential(s) belong to it` : null;
});

const dto = (ctx: ServiceCtx, row: CredentialRow) => toCredentialDto(row, ctx.deps.keyring.has(row.kekId));

/**
 * May the actor use `permission` on this credential? Another organisation's answers 404. An organisation-wide
 * grant of the permission suffices; for a project-scoped credential the actor's project role may grant it too.
 */
async function assertAccess(ctx: ActorCtx, row: { organizationId: string; projectId: string | null }, permission: ProjectPermission & `credential:${string}`) {
  if (row.organizationId !== ctx.actor.organizationId && ctx.actor.role !== 'super_admin') throw notFound('credential');
  if (roleHas(ctx.actor.role, permission)) return;
  if (row.projectId) {
    const access = await resolveProjectAccess(ctx, row.projectId).catch(() => undefined);
    if (access && accessAllows(access, permission)) return;
    if (!access) throw notFound('credential');
  }
  throw forbidden();
}

async function findCredential(ctx: ActorCtx, id: string, lock: boolean): Promise<CredentialRow> {
  const query = ctx.db.select().from(credentials).where(eq(credentials.id, id));
  const [row] = lock ? await query.for('update') : await query;
  if (!row) throw notFound('credential');
  return row;
}

function validationError(issues: { field: string; message: string }[]) {
  return new AppError('BAD_REQUEST', `Invalid input: ${issues.map((i) => i.field).join(', ')}`, { errors: issues });
}

export async function listCredentials(ctx: ActorCtx, input: ListCredentialsInput) {
  const after = decodeCursor(input.cursor);
  const orgWide = roleHas(ctx.actor.role, 'credential:view');
  const filters: (SQL | undefined)[] = [
    eq(credentials.organizationId, ctx.actor.organizationId),
    orgWide ? undefined : inArray(credentials.projectId, ctx.db.select({ id: projectMembers.projectId }).from(projectMembers).where(eq(projectMembers.userId, ctx.actor.userId))),
    input.kind ? eq(credentials.kind, input.kind) : undefined,
    input.project_id ? eq(credentials.projectId, input.project_id) : undefined,
    input.search ? ilike(credentials.name, likePattern(input.search)) : undefined,
    after ? lt(credentials.id, after) : undefined,
  ];
  const rows = await ctx.db.select().from(credentials).where(and(...filters)).orderBy(desc(credentials.id)).limit(input.limit + 1);
  return toPage(rows, input.limit, (r) => dto(ctx, r));
}

export async function createCredential(ctx: ActorCtx, input: CreateCredentialInput) {
  if (input.project_id) {
    const access = await resolveProjectAccess(ctx, input.project_id);
    if (!roleHas(ctx.actor.role, 'credential:manage') && !accessAllows(access, 'credential:manage')) throw forbidden();
  } else if (!roleHas(ctx.actor.role, 'credential:manage')) throw forbidden();
  const split = splitValues(input.kind, input.values);
  if (Array.isArray(split)) throw validationError(split);
  return inTransaction(ctx, async (tx) => {
    await assertNameFree(tx, ctx.actor.organizationId, input.name);
    const now = ctx.clock.now();
    const id = ctx.ids.uuid();
    const sealed = seal(Buffer.from(JSON.stringify(split.secrets)), credentialAad({ organizationId: ctx.actor.organizationId, id, version: 1 }), ctx.deps.keyring);
    const [row] = await tx.db
      .insert(credentials)
      .values({
        id,
        organizationId: ctx.actor.organizationId,
        projectId: input.project_id ?? null,
        kind: input.kind,
        name: input.name,
        fields: split.fields,
        masks: split.masks,
        ...sealedColumns(sealed),
        createdBy: ctx.actor.userId,
        createdAt: now,
        updatedAt: now,
      })
      .returning();
    await appendAudit(tx, {
      action: 'create',
      resourceType: 'credential',
      resourceId: id,
      organizationId: row!.organizationId,
      details: { after: { name: row!.name, kind: row!.kind, project_id: row!.projectId, fields: row!.fields, masked: row!.masks } },
    });
    return dto(ctx, row!);
  });
}

async function assertNameFree(ctx: ActorCtx, organizationId: string, name: string, exceptId?: string) {
  const [clash] = await ctx.db
    .select({ id: credentials.id })
    .from(credentials)
    .where(and(eq(credentials.organizationId, organizationId), sql`lower(${credentials.name}) = lower(${name})`, exceptId ? ne(credentials.id, exceptId) : undefined));
  if (clash) throw conflict('A credential with this name already exists in the organisation');
}

function openSecrets(ctx: ServiceCtx, row: CredentialRow): Record<string, unknown> {
  try {
    return JSON.parse(open(sealedOf(row), credentialAad(row), ctx.deps.keyring).toString('utf8')) as Record<string, unknown>;
  } catch (err) {
    if (err instanceof SecretUnavailable) {
      throw new AppError('CONFLICT', err.reason === 'key_missing' ? 'This credential needs re-entry: the key protecting it is not loaded' : 'This credential failed its integrity check; re-enter it', { cause: err });
    }
    throw err;
  }
}

export async function updateCredential(ctx: ActorCtx, input: UpdateCredentialInput) {
  return inTransaction(ctx, async (tx) => {
    const row = await findCredential(tx, input.id, true);
    await assertAccess(tx, row, 'credential:manage');
    const patch: Partial<CredentialRow> = {};
    const changes: Record<string, { old: unknown; new: unknown }> = {};
    if (input.name !== undefined && input.name !== row.name) {
      await assertNameFree(tx, row.organizationId, input.name, row.id);
      patch.name = input.name;
      changes.name = { old: row.name, new: input.name };
    }
    if (input.values !== undefined) {
      // values is the kind's full set; a secret sent back as its current mask keeps the stored value.
      const values: Record<string, unknown> = { ...input.values };
      const kept = secretFieldsOf(row.kind as CredentialKind).filter((k) => typeof values[k] === 'string' && values[k] === row.masks[k]);
      if (kept.length > 0) {
        const current = openSecrets(ctx, row);
        for (const k of kept) values[k] = current[k];
      }
      const split = splitValues(row.kind as CredentialKind, values);
      if (Array.isArray(split)) throw validationError(split);
      // The secret material gets a new version, a fresh data key and the AAD of that version.
      const version = row.version + 1;
      const sealed = seal(Buffer.from(JSON.stringify(split.secrets)), credentialAad({ ...row, version }), ctx.deps.keyring);
      Object.assign(patch, { fields: split.fields, masks: split.masks, ...sealedColumns(sealed), version });
      changes.fields = { old: row.fields, new: split.fields };
      changes.masked = { old: row.masks, new: split.masks };
    }
    if (Object.keys(patch).length === 0) return dto(ctx, row);
    const [updated] = await tx.db
      .update(credentials)
      .set({ ...patch, updatedAt: ctx.clock.now() })
      .where(eq(credentials.id, row.id))
      .returning();
    await appendAudit(tx, { action: 'update', resourceType: 'credential', resourceId: row.id, organizationId: row.organizationId, details: { changes: changes as never } });
    return dto(ctx, updated!);
  });
}

export async function deleteCredential(ctx: ActorCtx, id: string) {
  return inTransaction(ctx, async (tx) => {
    const row = await findCredential(tx, id, true);
    await assertAccess(tx, row, 'credential:manage');
    const blockers = (await Promise.all(credentialDependencyChecks.map((check) => check(tx, row.id)))).filter((b): b is string => b !== null);
    if (blockers.length > 0) throw conflict(`The credential is still in use: ${blockers.join('; ')}`);
    await tx.db.delete(credentials).where(eq(credentials.id, row.id));
    await appendAudit(tx, {
      action: 'delete',
      resourceType: 'credential',
      resourceId: row.id,
      organizationId: row.organizationId,
      details: { before: { name: row.name, kind: row.kind, project_id: row.projectId, fields: row.fields, masked: row.masks } },
    });
    return dto(ctx, row);
  });
}

/**
 * The only way to plaintext: for peer services with the internal token. Every decrypt is audited on the
 * credential's organisation chain with who asked, and bumps last_used_at.
 */
export async function revealForService(ctx: ServiceCtx, id: string, requestedBy: string) {
  return inTransaction(ctx, async (tx) => {
    const [row] = await tx.db.select().from(credentials).where(eq(credentials.id, id)).for('update');
    if (!row) throw notFound('credential');
    const secrets = openSecrets(tx, row);
    const now = ctx.clock.now();
    await tx.db.update(credentials).set({ lastUsedAt: now }).where(eq(credentials.id, row.id));
    await appendAudit(tx, {
      action: 'secret_access',
      resourceType: 'credential',
      resourceId: row.id,
      organizationId: row.organizationId,
      userId: null,
      actorType: 'service',
      details: { requested_by: requestedBy, version: row.version },
    });
    return { id: row.id, kind: row.kind, version: row.version, values: { ...row.fields, ...secrets } };
  });
}
