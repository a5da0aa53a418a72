import { sql } from 'drizzle-orm';
import { pgTable, text, uniqueIndex } from 'drizzle-orm/pg-core';
import { id, timestamps } from './columns.js';

export const organizations = pgTable(
  'organizations',
  {
    id: id(),
    name: text().notNull(),
    ...timestamps,
  },
  (t) => [uniqueIndex('organizations_name_lower_key').on(sql`lower(${t.name})`)],
);

export type OrganizationRow = typeof organizations.$inferSelect;
