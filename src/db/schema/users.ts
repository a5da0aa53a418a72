import { sql } from 'drizzle-orm';
import { boolean, check, index, pgTable, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core';
import { id, timestamps } from './columns.js';
import { organizations } from './organizations.js';

export const ROLES = ['super_admin', 'admin', 'devops', 'developer', 'tester'] as const;
export type Role = (typeof ROLES)[number];

export const USER_STATUSES = ['active', 'invited', 'deactivated'] as const;
export type UserStatus = (typeof USER_STATUSES)[number];

export const users = pgTable(
  'users',
  {
    id: id(),
    email: text().notNull(),
    name: text().notNull(),
    keycloakId: text(),
    organizationId: uuid()
      .notNull()
      .references(() => organizations.id),
    role: text({ enum: ROLES }).notNull(),
    status: text({ enum: USER_STATUSES }).notNull(),
    // Derived from status so the two can never disagree.
    isActive: boolean()
      .notNull()
      .generatedAlwaysAs(sql`status <> 'deactivated'`),
    passwordHash: text(),
    ...timestamps,
    deactivatedAt: timestamp({ withTimezone: true, mode: 'date' }),
  },
  (t) => [
    uniqueIndex('users_email_lower_key').on(sql`lower(${t.email})`),
    uniqueIndex('users_keycloak_id_key').on(t.keycloakId),
    index('users_organization_id_id_idx').on(t.organizationId, t.id),
    check('users_role_check', sql`${t.role} IN ('super_admin','admin','devops','developer','tester')`),
    check('users_status_check', sql`${t.status} IN ('active','invited','deactivated')`),
  ],
);

export type UserRow = typeof users.$inferSelect;
