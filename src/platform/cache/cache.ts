/**
 * Short-lived shared state: rate-limit counters, the access-token denylist, cached user state.
 * The first implementation is in-process; a Redis one slots in behind the same interface for several replicas.
 */
export interface Cache {
  readonly kind: string;
  get(key: string): Promise<string | undefined>;
  set(key: string, value: string, ttlSeconds: number): Promise<void>;
  delete(key: string): Promise<void>;
  /** Reads and removes in one step (Redis GETDEL): of two concurrent takes, one gets the value. */
  take(key: string): Promise<string | undefined>;
  /** Increments a counter that lives ttlSeconds from its first increment; returns the count and ms until reset. */
  increment(key: string, ttlSeconds: number): Promise<{ count: number; resetInMs: number }>;
  close(): Promise<void>;
}
