import { and, desc, eq, ilike, lt, sql } from 'drizzle-orm';
import type { DbOrTx } from '../../db/client.js';
import { organizations } from '../../db/schema/organizations.js';
import { conflict } from '../../lib/errors.js';
import { decodeCursor, toPage } from '../../lib/pagination.js';
import { appendAudit } from '../audit/chain.js';
import { inTransaction, type ActorCtx, type ServiceCtx } from '../service-ctx.js';
import { likePattern } from '../../lib/sql.js';
import { toOrganizationDto, type CreateOrganizationInput, type ListOrganizationsInput } from './schemas.js';

export async function listOrganizations(ctx: ActorCtx, input: ListOrganizationsInput) {
  const after = decodeCursor(input.cursor);
  const rows = await ctx.db
    .select()
    .from(organizations)
    .where(and(input.search ? ilike(organizations.name, likePattern(input.search)) : undefined, after ? lt(organizations.id, after) : undefined))
    .orderBy(desc(organizations.id))
    .limit(input.limit + 1);
  return toPage(rows, input.limit, toOrganizationDto);
}

export async function findOrganizationByName(db: DbOrTx, name: string) {
  const [row] = await db.select().from(organizations).where(sql`lower(${organizations.name}) = lower(${name})`);
  return row;
}

/** Organisations are platform-level objects: their creation is recorded on the platform chain. */
export async function createOrganization(ctx: ServiceCtx, input: CreateOrganizationInput) {
  return inTransaction(ctx, async (tx) => {
    if (await findOrganizationByName(tx.db, input.name)) throw conflict('An organisation with this name already exists');
    const now = ctx.clock.now();
    const [row] = await tx.db
      .insert(organizations)
      .values({ id: ctx.ids.uuid(), name: input.name, createdAt: now, updatedAt: now })
      .returning();
    await appendAudit(tx, { action: 'create', resourceType: 'organization', resourceId: row!.id, organizationId: null, details: { after: { name: row!.name } } });
    return toOrganizationDto(row!);
  });
}

export async function getOrganization(ctx: ServiceCtx, id: string) {
  const [row] = await ctx.db.select().from(organizations).where(eq(organizations.id, id));
  return row;
}
