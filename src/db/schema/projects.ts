import { sql } from 'drizzle-orm';
import { check, index, integer, jsonb, pgTable, primaryKey, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core';
import { id, timestamps } from './columns.js';
import { organizations } from './organizations.js';
import { users } from './users.js';

export const PROJECT_STATUSES = ['active', 'deleted'] as const;
export type ProjectStatus = (typeof PROJECT_STATUSES)[number];

export const PROJECT_ROLES = ['owner', 'editor', 'viewer'] as const;
export type ProjectRole = (typeof PROJECT_ROLES)[number];

export interface ProjectSettings {
  icon?: string;
  environment?: 'development' | 'staging' | 'production';
  tags?: { name: string; color: string }[];
}

export const projects = pgTable(
  'projects',
  {
    id: id(),
    name: text().notNull(),
    description: text().notNull().default(''),
    organizationId: uuid()
      .notNull()
      .references(() => organizations.id),
    ownerId: uuid()
      .notNull()
      .references(() => users.id),
    settings: jsonb().$type<ProjectSettings>().notNull().default({}),
    status: text({ enum: PROJECT_STATUSES }).notNull().default('active'),
    /** Optimistic-concurrency version, exposed as the ETag. */
    version: integer().notNull().default(1),
    ...timestamps,
    deletedAt: timestamp({ withTimezone: true, mode: 'date' }),
    /**
     * The project as GET /projects shows it (ProjectDto as JSON text), kept by the trigger `projects_dto_json`
     * on every insert and update (migration 0008), so a page is read without formatting a field. The default is
     * never stored: the trigger replaces it.
     */
    dtoJson: text().notNull().default(''),
  },
  (t) => [
    // Names are unique per organisation among active projects, case-insensitively.
    uniqueIndex('projects_org_name_active_key').on(t.organizationId, sql`lower(${t.name})`).where(sql`${t.status} = 'active'`),
    index('projects_org_status_id_idx').on(t.organizationId, t.status, t.id),
    check('projects_status_check', sql`${t.status} IN ('active','deleted')`),
  ],
);

export const projectMembers = pgTable(
  'project_members',
  {
    projectId: uuid()
      .notNull()
      .references(() => projects.id),
    userId: uuid()
      .notNull()
      .references(() => users.id),
    role: text({ enum: PROJECT_ROLES }).notNull(),
    ...timestamps,
  },
  (t) => [
    primaryKey({ columns: [t.projectId, t.userId] }),
    index('project_members_user_project_idx').on(t.userId, t.projectId),
    check('project_members_role_check', sql`${t.role} IN ('owner','editor','viewer')`),
  ],
);

/** Idempotency-Key records for POST creates: the first response is replayed for 24 hours. */
export const idempotencyKeys = pgTable(
  'idempotency_keys',
  {
    userId: uuid().notNull(),
    key: text().notNull(),
    route: text().notNull(),
    requestHash: text().notNull(),
    state: text({ enum: ['in_progress', 'done'] }).notNull(),
    status: integer(),
    responseBody: text(),
    createdAt: timestamp({ withTimezone: true, mode: 'date' }).notNull(),
    expiresAt: timestamp({ withTimezone: true, mode: 'date' }).notNull(),
  },
  (t) => [primaryKey({ columns: [t.userId, t.key] }), index('idempotency_keys_expires_idx').on(t.expiresAt)],
);

export type ProjectRow = typeof projects.$inferSelect;
export type ProjectMemberRow = typeof projectMembers.$inferSelect;
