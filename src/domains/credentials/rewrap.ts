import { and, asc, gt, ne, sql } from 'drizzle-orm';
import type { Db } from '../../db/client.js';
import { credentials } from '../../db/schema/credentials.js';
import type { Keyring } from '../../platform/crypto/keyring.js';
import { createRewrapPool } from '../../platform/crypto/rewrap-pool.js';
import { appendAudit } from '../audit/chain.js';
import type { ServiceCtx } from '../service-ctx.js';

export interface RewrapProgress {
  rewrapped: number;
  remaining: number;
  missingKey: number;
}

/**
 * Re-wraps every data key that is not under the current key-encryption key, without ever decrypting a
 * payload: unwrap the data key with its old KEK, wrap it with the current one, in batches that each commit
 * on their own — an interrupted run resumes where it stopped. Rows whose KEK is not loaded are skipped and
 * counted (they need re-entry). Audited on the platform chain.
 */
/** rewrapAll with the unwraps spread over every core (worker threads); the pool lives for one run. */
export async function rewrapAllParallel(ctx: ServiceCtx, options: Omit<Parameters<typeof rewrapAll>[1] & {}, 'unwrapBatch'> = {}): Promise<RewrapProgress> {
  const pool = createRewrapPool(ctx.deps.keyring);
  // rows are labelled with the keyring's current key: the pool must wrap under exactly that key
  if (pool.targetKekId !== ctx.deps.keyring.currentId) throw new Error('rewrap pool and keyring disagree on the current key');
  try {
    return await rewrapAll(ctx, { ...options, unwrapBatch: pool.rewrapBatch });
  } finally {
    await pool.close();
  }
}

export async function rewrapAll(
  ctx: ServiceCtx,
  options: { batchSize?: number; maxBatches?: number; onProgress?: (p: RewrapProgress) => void; unwrapBatch?: UnwrapBatch } = {},
): Promise<RewrapProgress> {
  const keyring = ctx.deps.keyring;
  // ~1,000 keeps peak memory under 200 MB and row locks short (bench/RESULTS.md)
  const batchSize = options.batchSize ?? 1000;
  const rewrapBatch = options.unwrapBatch ?? localRewrap(keyring);
  // Counted once: a count after every batch grows with the square of the table.
  const initial = await countNotCurrent(ctx.db, keyring);
  const progress: RewrapProgress = { rewrapped: 0, remaining: initial, missingKey: 0 };
  let afterId = '00000000-0000-0000-0000-000000000000';
  for (let batch = 0; options.maxBatches === undefined || batch < options.maxBatches; batch++) {
    const done = await ctx.db.transaction(async (tx) => {
      const rows = await tx
        .select({ id: credentials.id, kekId: credentials.kekId, wrappedKey: credentials.wrappedKey })
        .from(credentials)
        .where(and(ne(credentials.kekId, keyring.currentId), gt(credentials.id, afterId)))
        .orderBy(asc(credentials.id))
        .limit(batchSize)
        .for('update', { skipLocked: true });
      if (rows.length === 0) return true;
      afterId = rows[rows.length - 1]!.id;
      const openable = rows.filter((r) => keyring.has(r.kekId));
      progress.missingKey += rows.length - openable.length;
      const rewrapped = await rewrapBatch(openable.map((r) => ({ kekId: r.kekId, wrapped: r.wrappedKey })));
      if (openable.length > 0) {
        const values = sql.join(
          openable.map((r, i) => sql`(${r.id}::uuid, ${rewrapped[i]!}::bytea)`),
          sql`, `,
        );
        await tx.execute(
          sql`update credentials set wrapped_key = v.wrapped, kek_id = ${keyring.currentId} from (values ${values}) as v(id, wrapped) where credentials.id = v.id`,
        );
      }
      progress.rewrapped += openable.length;
      return rows.length < batchSize;
    });
    progress.remaining = Math.max(0, initial - progress.rewrapped - progress.missingKey);
    options.onProgress?.({ ...progress });
    if (done) break;
  }
  progress.remaining = await countNotCurrent(ctx.db, keyring);
  await ctx.db.transaction((tx) =>
    appendAudit(
      { ...ctx, db: tx },
      {
        action: 'key_rotation',
        resourceType: 'encryption_key',
        resourceId: keyring.currentId,
        organizationId: null,
        details: { to_key_id: keyring.currentId, rewrapped: progress.rewrapped, remaining: progress.remaining },
      },
    ),
  );
  return progress;
}

export async function countNotCurrent(db: Db, keyring: Keyring): Promise<number> {
  const [row] = await db.select({ n: sql<number>`count(*)::int` }).from(credentials).where(ne(credentials.kekId, keyring.currentId));
  return row?.n ?? 0;
}

/** Turns a batch of wrapped data keys (under any loaded KEK) into wrapped data keys under the current KEK. */
export type UnwrapBatch = (items: { kekId: string; wrapped: Buffer }[]) => Promise<Buffer[]>;

export const localRewrap =
  (keyring: Keyring): UnwrapBatch =>
  async (items) =>
    items.map(({ kekId, wrapped }) => {
      const dataKey = keyring.unwrap(kekId, wrapped)!;
      try {
        return keyring.wrap(dataKey).wrapped;
      } finally {
        dataKey.fill(0);
      }
    });

