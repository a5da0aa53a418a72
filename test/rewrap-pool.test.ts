import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKek, Keyring } from '../src/platform/crypto/keyring.js';
import { createRewrapPool } from '../src/platform/crypto/rewrap-pool.js';

let dir: string;
let k1: string;
let k2: string;
let k3: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'budapp-rewrap-pool-'));
  k1 = generateKek(dir, false);
  k2 = generateKek(dir, false);
  k3 = generateKek(dir, true);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** OS threads of this process (Linux); undefined elsewhere. */
const threadCount = () => (existsSync('/proc/self/status') ? Number(/^Threads:\s+(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]) : undefined);

describe('createRewrapPool', () => {
  it('re-wraps data keys from two KEKs under the current one, in order, on every worker', async () => {
    const under = (id: string) => Keyring.load(dir, { currentKeyId: id, generateIfMissing: false });
    const sources = [under(k1), under(k2)];
    const dataKeys = Array.from({ length: 301 }, () => randomBytes(32));
    // Interleaved and uneven so the order of the output cannot come out right by accident.
    const items = dataKeys.map((key, i) => sources[i % 3 === 0 ? 0 : 1]!.wrap(key));
    expect(new Set(items.map((i) => i.kekId))).toEqual(new Set([k1, k2]));

    const keyring = Keyring.load(dir, { generateIfMissing: false });
    expect(keyring.currentId).toBe(k3);
    const before = threadCount();
    const pool = createRewrapPool(keyring, 2);
    try {
      expect(pool.targetKekId).toBe(k3);
      const out = await pool.rewrapBatch(items);
      expect(out).toHaveLength(items.length);
      for (let i = 0; i < items.length; i++) {
        expect(out[i]!.equals(items[i]!.wrapped)).toBe(false);
        expect(keyring.unwrap(k3, out[i]!)!.equals(dataKeys[i]!)).toBe(true);
      }
      // Concurrent calls each keep their own order.
      const [a, b] = await Promise.all([pool.rewrapBatch(items.slice(0, 40)), pool.rewrapBatch(items.slice(40, 90))]);
      expect([...a, ...b].map((w) => keyring.unwrap(k3, w)!.toString('hex'))).toEqual(dataKeys.slice(0, 90).map((k) => k.toString('hex')));
      expect(await pool.rewrapBatch([])).toEqual([]);
      if (before !== undefined) expect(threadCount()).toBeGreaterThanOrEqual(before + 2);
    } finally {
      await pool.close();
    }
    // close() ended both worker threads, and the pool refuses further work.
    if (before !== undefined) expect(threadCount()).toBeLessThanOrEqual(before);
    await expect(pool.rewrapBatch(items.slice(0, 1))).rejects.toThrow(/closed/);
    await pool.close();
  });

  it('rejects a batch holding a key it does not have, before any work; a corrupt key fails its batch only', async () => {
    const keyring = Keyring.load(dir, { generateIfMissing: false });
    const pool = createRewrapPool(keyring, 2);
    try {
      const good = keyring.wrap(randomBytes(32));
      await expect(pool.rewrapBatch([good, { kekId: 'kek-0000000000000000', wrapped: good.wrapped }])).rejects.toThrow(/kek-0000000000000000 is not loaded/);
      const corrupt = { kekId: good.kekId, wrapped: Buffer.from(good.wrapped).fill(7, 0, 8) };
      await expect(pool.rewrapBatch([good, corrupt])).rejects.toThrow(/rewrap failed/);
      // The pool still works afterwards.
      const [again] = await pool.rewrapBatch([good]);
      expect(keyring.unwrap(keyring.currentId, again!)!.equals(keyring.unwrap(good.kekId, good.wrapped)!)).toBe(true);
    } finally {
      await pool.close();
    }
  });

  it('fails as a whole, without respawning, when a worker dies', async () => {
    const real = Keyring.load(dir, { generateIfMissing: false });
    // Key material the workers cannot parse: each dies at start.
    const broken = { ids: [k1], currentId: k1, privateKeyPem: () => 'not a key', currentPublicKeyPem: () => real.currentPublicKeyPem() } as unknown as Keyring;
    const before = threadCount();
    const pool = createRewrapPool(broken, 2);
    const item = { kekId: k1, wrapped: Buffer.alloc(384) };
    await expect(pool.rewrapBatch([item])).rejects.toThrow(/rewrap worker exited|rewrap pool failed/);
    await expect(pool.rewrapBatch([item])).rejects.toThrow(/rewrap pool failed/);
    await pool.close();
    if (before !== undefined) expect(threadCount()).toBeLessThanOrEqual(before);
  });
});
