import type { Cache } from '../platform/cache/cache.js';
import { AppError } from './errors.js';

export interface RateLimitRule {
  /** Counter namespace, e.g. "login:ip". */
  name: string;
  limit: number;
  windowSeconds: number;
}

export interface RateLimiter {
  /** Counts one hit against every rule; throws RATE_LIMITED (429 + Retry-After) when any is exceeded. */
  hit(checks: Array<{ rule: RateLimitRule; key: string }>): Promise<void>;
}

/** Fixed-window counters kept in the shared cache. */
export function createRateLimiter(cache: Cache, enabled: boolean): RateLimiter {
  return {
    async hit(checks) {
      if (!enabled) return;
      let retryAfterMs = 0;
      for (const { rule, key } of checks) {
        const { count, resetInMs } = await cache.increment(`rl:${rule.name}:${key}`, rule.windowSeconds);
        if (count > rule.limit) retryAfterMs = Math.max(retryAfterMs, resetInMs);
      }
      if (retryAfterMs > 0) {
        throw new AppError('RATE_LIMITED', 'Too many attempts; try again later', {
          retryAfterSeconds: Math.max(1, Math.ceil(retryAfterMs / 1000)),
        });
      }
    },
  };
}
