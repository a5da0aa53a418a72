import { and, count, desc, eq, ilike, inArray, isNull, lt, ne, or, sql, type SQL } from 'drizzle-orm';
import { prepared } from '../../db/prepared.js';
import { refreshTokens } from '../../db/schema/auth.js';
import { organizations } from '../../db/schema/organizations.js';
import { users, type Role, type UserRow } from '../../db/schema/users.js';
import { AppError, badField, conflict, forbidden, notFound } from '../../lib/errors.js';
import { decodeCursor, toPage } from '../../lib/pagination.js';
import { likePattern } from '../../lib/sql.js';
import { hashPassword, passwordProblem } from '../../lib/passwords.js';
import { permissionsOf, ROLE_RANK } from '../../lib/permissions.js';
import type { ActorType } from '../../lib/audit/actions.js';
import { appendAudit } from '../audit/chain.js';
import { membershipsOf } from '../projects/service.js';
import { inTransaction, type ActorCtx, type ServiceCtx } from '../service-ctx.js';
import { toUserDto, type CreateUserInput, type ListUsersInput, type UpdateUserInput } from './schemas.js';

const isSuperAdmin = (ctx: ActorCtx) => ctx.actor.role === 'super_admin';


// The single-user reads are the hottest queries: prepared once per pool (see db/prepared.ts).
const userById = (ctx: ActorCtx) =>
  prepared(ctx.db, ctx.deps.db, 'users_by_id', (db) => db.select().from(users).where(eq(users.id, sql.placeholder('id'))).prepare('users_by_id'));
const userByIdInOrg = (ctx: ActorCtx) =>
  prepared(ctx.db, ctx.deps.db, 'users_by_id_in_org', (db) =>
    db
      .select()
      .from(users)
      .where(and(eq(users.id, sql.placeholder('id')), eq(users.organizationId, sql.placeholder('org'))))
      .prepare('users_by_id_in_org'),
  );

/** A user the actor may see: same organisation, or any organisation for a super admin. Otherwise 404. */
async function findVisibleUser(ctx: ActorCtx, id: string, lock = false): Promise<UserRow> {
  const statement = lock ? undefined : isSuperAdmin(ctx) ? userById(ctx) : userByIdInOrg(ctx);
  let row: UserRow | undefined;
  if (statement) {
    [row] = await statement.execute({ id, org: ctx.actor.organizationId });
  } else {
    const scope = isSuperAdmin(ctx) ? eq(users.id, id) : and(eq(users.id, id), eq(users.organizationId, ctx.actor.organizationId));
    const query = ctx.db.select().from(users).where(scope);
    [row] = lock ? await query.for('update') : await query;
  }
  if (!row) throw notFound('user');
  return row;
}

export async function getUser(ctx: ActorCtx, id: string) {
  return toUserDto(await findVisibleUser(ctx, id));
}

export async function listUsers(ctx: ActorCtx, input: ListUsersInput) {
  if (input.organization_id && !isSuperAdmin(ctx)) {
    throw badField('organization_id', 'only super admins may list another organisation');
  }
  const after = decodeCursor(input.cursor);
  const filters: (SQL | undefined)[] = [
    eq(users.organizationId, input.organization_id ?? ctx.actor.organizationId),
    input.role ? eq(users.role, input.role) : undefined,
    input.status ? eq(users.status, input.status) : undefined,
    input.search ? or(ilike(users.name, likePattern(input.search)), ilike(users.email, likePattern(input.search))) : undefined,
    after ? lt(users.id, after) : undefined,
  ];
  const rows = await ctx.db
    .select()
    .from(users)
    .where(and(...filters))
    .orderBy(desc(users.id))
    .limit(input.limit + 1);
  return toPage(rows, input.limit, toUserDto);
}

function assertMayGrant(ctx: ActorCtx, role: Role, field = 'role') {
  if (ROLE_RANK[role] > ROLE_RANK[ctx.actor.role]) {
    throw new AppError('FORBIDDEN', `You cannot grant the role ${role}, which is above your own`, {
      errors: [{ field, message: 'above your own role' }],
    });
  }
}

export async function createUser(ctx: ActorCtx, input: CreateUserInput) {
  if (input.organization_id && !isSuperAdmin(ctx)) {
    throw badField('organization_id', 'only super admins may create users in another organisation');
  }
  assertMayGrant(ctx, input.role);
  if (input.password !== undefined) {
    const problem = passwordProblem(input.password, input.email);
    if (problem) throw badField('password', problem);
  }
  const organizationId = input.organization_id ?? ctx.actor.organizationId;
  const keycloak = ctx.deps.keycloak;
  // With Keycloak the provider holds the password; the user is created there first and linked by keycloak_id.
  const passwordHash = input.password === undefined || keycloak ? null : await hashPassword(input.password);
  const keycloakId = keycloak ? await keycloak.createUser({ email: input.email, name: input.name, password: input.password }) : null;
  try {
    // The provider's role claims decide at every sign-in, so the role must be granted there too.
    if (keycloak && keycloakId) await keycloak.setRealmRole(keycloakId, input.role);
    return await insertUser(ctx, input, organizationId, passwordHash, keycloakId);
  } catch (err) {
    if (keycloak && keycloakId) await keycloak.deleteUser(keycloakId).catch((e: unknown) => ctx.log.error({ err: e, keycloak_id: keycloakId }, 'could not remove the provider user after a failed create'));
    throw err;
  }
}

async function insertUser(ctx: ActorCtx, input: CreateUserInput, organizationId: string, passwordHash: string | null, keycloakId: string | null) {
  return inTransaction(ctx, async (tx) => {
    const [org] = await tx.db.select({ id: organizations.id }).from(organizations).where(eq(organizations.id, organizationId));
    if (!org) throw notFound('organization');
    const [clash] = await tx.db.select({ id: users.id }).from(users).where(sql`lower(${users.email}) = ${input.email}`);
    if (clash) throw conflict('A user with this email already exists');
    const row = await insertUserAudited(tx, {
      email: input.email,
      name: input.name,
      organizationId,
      role: input.role,
      status: passwordHash || (keycloakId && input.password) ? 'active' : 'invited',
      passwordHash,
      keycloakId,
    });
    return toUserDto(row);
  });
}

/**
 * Inserts a user and records its creation on the chain of `chainOrganizationId` (default: the user's own
 * organisation), inside the caller's transaction. Every way a user comes to exist goes through here.
 */
export async function insertUserAudited(
  ctx: ServiceCtx,
  values: Omit<typeof users.$inferInsert, 'id' | 'createdAt' | 'updatedAt'>,
  audit: { actorType?: ActorType; chainOrganizationId?: string | null; extra?: Record<string, unknown> } = {},
): Promise<UserRow> {
  const now = ctx.clock.now();
  const [row] = await ctx.db.insert(users).values({ ...values, id: ctx.ids.uuid(), createdAt: now, updatedAt: now }).returning();
  await appendAudit(ctx, {
    action: 'create',
    resourceType: 'user',
    resourceId: row!.id,
    organizationId: audit.chainOrganizationId !== undefined ? audit.chainOrganizationId : row!.organizationId,
    ...(audit.actorType ? { actorType: audit.actorType, userId: null } : {}),
    details: { after: { ...userSnapshot(row!), ...audit.extra } },
  });
  return row!;
}

/** What the audit trail keeps of a user: never the password hash. */
export const userSnapshot = (u: UserRow) => ({ email: u.email, name: u.name, role: u.role, status: u.status, organization_id: u.organizationId });

/** Serialises admin-count checks per organisation, so two concurrent demotions cannot both pass. */
async function assertNotLastAdmin(ctx: ActorCtx, target: UserRow) {
  await ctx.db.select({ id: organizations.id }).from(organizations).where(eq(organizations.id, target.organizationId)).for('update');
  const [row] = await ctx.db
    .select({ n: count() })
    .from(users)
    .where(
      and(
        eq(users.organizationId, target.organizationId),
        inArray(users.role, ['admin', 'super_admin']),
        eq(users.status, 'active'),
        ne(users.id, target.id),
      ),
    );
  if ((row?.n ?? 0) === 0) throw conflict('This is the last admin of the organisation; appoint another admin first');
}

async function revokeSessions(ctx: ServiceCtx, userId: string) {
  await ctx.db
    .update(refreshTokens)
    .set({ revokedAt: ctx.clock.now(), revokedReason: 'user_deactivated' })
    .where(and(eq(refreshTokens.userId, userId), isNull(refreshTokens.revokedAt)));
}

export async function updateUser(ctx: ActorCtx, input: UpdateUserInput, auditAction: 'update' | 'delete' = 'update') {
  const result = await inTransaction(ctx, async (tx) => {
    const target = await findVisibleUser(tx, input.id, true);
    if (ROLE_RANK[target.role] > ROLE_RANK[ctx.actor.role]) throw forbidden('You cannot modify a user whose role is above your own');
    const patch: Partial<UserRow> = {};
    if (input.name !== undefined && input.name !== target.name) patch.name = input.name;
    if (input.role !== undefined && input.role !== target.role) {
      assertMayGrant(ctx, input.role);
      patch.role = input.role;
    }
    if (input.is_active !== undefined && input.is_active !== target.isActive) {
      if (!input.is_active && target.id === ctx.actor.userId) {
        throw new AppError('CONFLICT', 'You cannot deactivate yourself', { errors: [{ field: 'is_active', message: 'cannot deactivate yourself' }] });
      }
      patch.status = input.is_active ? (target.passwordHash || target.keycloakId ? 'active' : 'invited') : 'deactivated';
      patch.deactivatedAt = input.is_active ? null : ctx.clock.now();
    }
    const losesAdmin =
      (target.role === 'admin' || target.role === 'super_admin') &&
      target.status === 'active' &&
      ((patch.role && patch.role !== 'admin' && patch.role !== 'super_admin') || patch.status === 'deactivated');
    if (losesAdmin) await assertNotLastAdmin(tx, target);
    if (Object.keys(patch).length === 0) return { row: target, changed: false, previousRole: target.role };
    const [row] = await tx.db
      .update(users)
      .set({ ...patch, updatedAt: ctx.clock.now() })
      .where(eq(users.id, target.id))
      .returning();
    if (patch.status === 'deactivated') await revokeSessions(tx, target.id);
    const changes = Object.fromEntries(
      (['name', 'role', 'status'] as const).filter((k) => patch[k] !== undefined).map((k) => [k, { old: target[k], new: row![k] }]),
    );
    await appendAudit(tx, {
      action: auditAction,
      resourceType: 'user',
      resourceId: target.id,
      organizationId: target.organizationId,
      details: auditAction === 'delete' ? { before: userSnapshot(target) } : { changes },
    });
    return { row: row!, changed: true, previousRole: target.role };
  });
  if (result.changed) await ctx.deps.authenticator.forgetUser(result.row.id);
  if (result.changed && ctx.deps.keycloak && result.row.keycloakId && input.role !== undefined && result.previousRole !== result.row.role) {
    await ctx.deps.keycloak
      .setRealmRole(result.row.keycloakId, result.row.role, result.previousRole)
      .catch((err: unknown) => ctx.log.error({ err, user_id: result.row.id }, 'could not update the role at the identity provider'));
  }
  if (result.changed && ctx.deps.keycloak && result.row.keycloakId && input.is_active !== undefined) {
    // Our refusal is already in force; the provider follows so its own sessions end too.
    await ctx.deps.keycloak
      .setUserEnabled(result.row.keycloakId, result.row.status !== 'deactivated')
      .catch((err: unknown) => ctx.log.error({ err, user_id: result.row.id }, 'could not update the user at the identity provider'));
  }
  return toUserDto(result.row);
}

export async function deactivateUser(ctx: ActorCtx, id: string) {
  return updateUser(ctx, { id, is_active: false }, 'delete');
}

export async function userRoles(ctx: ActorCtx, id: string) {
  const target = await findVisibleUser(ctx, id);
  return { user_id: target.id, role: target.role, permissions: permissionsOf(target.role), project_memberships: await membershipsOf(ctx, target.id) };
}
