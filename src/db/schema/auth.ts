import { index, pgTable, text, timestamp, uuid } from 'drizzle-orm/pg-core';
import { id } from './columns.js';
import { users } from './users.js';

/**
 * Refresh tokens are stored only as SHA-256 hashes. Every rotation inserts a new row in the same family;
 * presenting a row that was already used revokes the whole family (reuse detection, RFC 9700 §4.14).
 */
export const refreshTokens = pgTable(
  'refresh_tokens',
  {
    id: id(),
    familyId: uuid().notNull(),
    userId: uuid()
      .notNull()
      .references(() => users.id),
    tokenHash: text().notNull().unique(),
    createdAt: timestamp({ withTimezone: true, mode: 'date' }).notNull().defaultNow(),
    expiresAt: timestamp({ withTimezone: true, mode: 'date' }).notNull(),
    usedAt: timestamp({ withTimezone: true, mode: 'date' }),
    revokedAt: timestamp({ withTimezone: true, mode: 'date' }),
    revokedReason: text({ enum: ['logout', 'reuse_detected', 'user_deactivated'] }),
  },
  (t) => [index('refresh_tokens_family_idx').on(t.familyId), index('refresh_tokens_user_idx').on(t.userId)],
);

export type RefreshTokenRow = typeof refreshTokens.$inferSelect;
