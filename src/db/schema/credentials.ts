import { sql } from 'drizzle-orm';
import { customType, index, integer, jsonb, pgTable, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core';
import { id, timestamps } from './columns.js';
import { organizations } from './organizations.js';
import { projects } from './projects.js';
import { users } from './users.js';

const bytea = customType<{ data: Buffer; driverData: Buffer | Uint8Array }>({
  dataType: () => 'bytea',
  fromDriver: (v) => (Buffer.isBuffer(v) ? v : Buffer.from(v)),
});

/**
 * Provider credentials. Non-secret fields and the masks of secret ones are plain; the secret fields are one
 * AES-256-GCM ciphertext under a per-credential data key, which is stored only wrapped (RSA-OAEP) by the
 * key-encryption key `kek_id`. The AAD binds organisation, id and version.
 */
export const credentials = pgTable(
  'credentials',
  {
    id: id(),
    organizationId: uuid()
      .notNull()
      .references(() => organizations.id),
    projectId: uuid().references(() => projects.id),
    kind: text().notNull(),
    name: text().notNull(),
    fields: jsonb().$type<Record<string, unknown>>().notNull(),
    masks: jsonb().$type<Record<string, string>>().notNull(),
    ciphertext: bytea().notNull(),
    iv: bytea().notNull(),
    authTag: bytea().notNull(),
    wrappedKey: bytea().notNull(),
    kekId: text().notNull(),
    version: integer().notNull().default(1),
    createdBy: uuid().references(() => users.id),
    ...timestamps,
    lastUsedAt: timestamp({ withTimezone: true, mode: 'date' }),
  },
  (t) => [
    uniqueIndex('credentials_org_name_key').on(t.organizationId, sql`lower(${t.name})`),
    index('credentials_org_id_idx').on(t.organizationId, t.id),
    index('credentials_kek_idx').on(t.kekId),
  ],
);

export type CredentialRow = typeof credentials.$inferSelect;
