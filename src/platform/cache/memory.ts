import type { Clock } from '../../lib/clock.js';
import type { Cache } from './cache.js';

interface Entry {
  value: string;
  expiresAt: number;
}

/** In-process cache. Expired entries are dropped on read and by a periodic sweep; size is bounded. */
export function createMemoryCache(clock: Clock, maxEntries = 100_000): Cache {
  const entries = new Map<string, Entry>();
  const sweep = setInterval(() => {
    const now = clock.now().getTime();
    for (const [k, e] of entries) if (e.expiresAt <= now) entries.delete(k);
  }, 30_000);
  sweep.unref();

  const live = (key: string): Entry | undefined => {
    const e = entries.get(key);
    if (!e) return undefined;
    if (e.expiresAt <= clock.now().getTime()) {
      entries.delete(key);
      return undefined;
    }
    return e;
  };
  const put = (key: string, entry: Entry) => {
    entries.delete(key);
    if (entries.size >= maxEntries) {
      const oldest = entries.keys().next().value;
      if (oldest !== undefined) entries.delete(oldest);
    }
    entries.set(key, entry);
  };

  return {
    kind: 'memory (in-process)',
    async get(key) {
      return live(key)?.value;
    },
    async set(key, value, ttlSeconds) {
      put(key, { value, expiresAt: clock.now().getTime() + ttlSeconds * 1000 });
    },
    async delete(key) {
      entries.delete(key);
    },
    async take(key) {
      const value = live(key)?.value;
      entries.delete(key);
      return value;
    },
    async increment(key, ttlSeconds) {
      const now = clock.now().getTime();
      const e = live(key);
      if (!e) {
        put(key, { value: '1', expiresAt: now + ttlSeconds * 1000 });
        return { count: 1, resetInMs: ttlSeconds * 1000 };
      }
      e.value = String(Number(e.value) + 1);
      return { count: Number(e.value), resetInMs: e.expiresAt - now };
    },
    async close() {
      clearInterval(sweep);
      entries.clear();
    },
  };
}
