import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { PACKAGE_ROOT } from '../../lib/package-root.js';
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import type { Keyring } from './keyring.js';

/** Same shape as UnwrapBatch in domains/credentials/rewrap.ts (kept here so platform does not import a domain). */
export type RewrapBatchFn = (items: { kekId: string; wrapped: Buffer }[]) => Promise<Buffer[]>;

export interface RewrapPool {
  /**
   * Turns wrapped data keys (each under a KEK loaded when the pool was created) into data keys wrapped under
   * `targetKekId`, in the same order. Rejects, without doing any work, when an item's KEK is not loaded.
   */
  rewrapBatch: RewrapBatchFn;
  /** The KEK every output is wrapped under: the keyring's current key when the pool was created. */
  readonly targetKekId: string;
  readonly threads: number;
  /**
   * Terminates the workers; calls still queued or running reject. Idempotent. If a worker dies, the pool
   * fails as a whole: pending and later calls reject (create a new pool to retry).
   */
  close(): Promise<void>;
}

interface Task {
  kekIndex: Uint16Array<ArrayBuffer>;
  wrapped: ArrayBuffer;
  offsets: Uint32Array<ArrayBuffer>;
  resolve: (out: Buffer[]) => void;
  reject: (err: Error) => void;
}

interface Slot {
  worker: Worker;
  task?: Task;
  failure?: Error;
}

const WORKER_URL = pathToFileURL(join(PACKAGE_ROOT, 'src/platform/crypto/rewrap-worker.mjs'));
/** Slices per worker per call: small enough that a worker slowed by a neighbour does not hold the batch up. */
const SLICES_PER_THREAD = 4;
const MIN_SLICE = 16;

/**
 * Re-wraps data keys on worker threads: the RSA-OAEP unwrap (a private-key operation, ~1–2 ms at 3072 bits)
 * dominates a key rotation, and one thread leaves the other cores idle. Each worker receives the private keys
 * of the keyring's KEKs and the current public key once (workerData) and, per slice of a batch, only wrapped
 * keys; data keys exist only inside the workers and are zeroed after re-wrapping. A batch is cut into
 * slices handed to whichever worker is free, and reassembled in order. Workers hold the process open only
 * while they have work.
 *
 * The pool snapshots the keyring: after loading a new keyring (a new current key), create a new pool.
 */
export function createRewrapPool(keyring: Keyring, threads = os.availableParallelism()): RewrapPool {
  if (!Number.isInteger(threads) || threads < 1) throw new Error(`rewrap pool: threads must be a positive integer, got ${threads}`);
  const kekIds = keyring.ids;
  const kekIndex = new Map(kekIds.map((id, i) => [id, i]));
  const workerData = {
    privateKeys: kekIds.map((id) => [id, keyring.privateKeyPem(id)!]),
    currentPublicKey: keyring.currentPublicKeyPem(),
  };
  const queue: Task[] = [];
  const slots: Slot[] = [];
  let closed = false;
  let failed: Error | undefined;

  const spawn = (): Slot => {
    // execArgv: [] — the worker is plain JavaScript, so no TypeScript loader (tsx, vitest) is started in it.
    const worker = new Worker(WORKER_URL, { workerData, execArgv: [] });
    worker.unref();
    const slot: Slot = { worker };
    worker.on('message', (msg: { error?: string; wrapped?: ArrayBuffer; offsets?: Uint32Array }) => {
      const task = slot.task;
      slot.task = undefined;
      worker.unref();
      if (task) {
        if (msg.error !== undefined) task.reject(new Error(`rewrap failed: ${msg.error}`));
        else task.resolve(unpack(msg.wrapped!, msg.offsets!));
      }
      dispatch();
    });
    worker.on('error', (err) => {
      slot.failure = err;
    });
    worker.on('exit', (code) => {
      const i = slots.indexOf(slot);
      if (i >= 0) slots.splice(i, 1);
      const task = slot.task;
      slot.task = undefined;
      if (closed) {
        task?.reject(failed ?? new Error('rewrap pool closed'));
        return;
      }
      // A worker that dies (bad key material, out of memory) fails the pool rather than being respawned into
      // the same failure: every call in progress rejects, and so does every later one. A rotation is resumable.
      const err = new Error(`rewrap worker exited (code ${code})${slot.failure ? `: ${slot.failure.message}` : ''}`, { cause: slot.failure });
      failed ??= err;
      task?.reject(err);
      void shutdown(err);
    });
    return slot;
  };

  const dispatch = () => {
    for (const slot of slots) {
      if (queue.length === 0) return;
      if (slot.task) continue;
      const task = queue.shift()!;
      slot.task = task;
      slot.worker.ref();
      slot.worker.postMessage({ kekIndex: task.kekIndex, wrapped: task.wrapped, offsets: task.offsets }, [task.wrapped, task.kekIndex.buffer, task.offsets.buffer]);
    }
  };

  const shutdown = async (reason: Error) => {
    closed = true;
    for (const task of queue.splice(0)) task.reject(reason);
    await Promise.all([...slots].map((s) => s.worker.terminate()));
  };

  for (let i = 0; i < threads; i++) slots.push(spawn());

  const run = (items: { kekId: string; wrapped: Buffer }[]): Promise<Buffer[]> => {
    const n = items.length;
    const index = new Uint16Array(n);
    const offsets = new Uint32Array(n + 1);
    let total = 0;
    for (let i = 0; i < n; i++) {
      index[i] = kekIndex.get(items[i]!.kekId)!;
      total += items[i]!.wrapped.length;
      offsets[i + 1] = total;
    }
    const wrapped = new ArrayBuffer(total);
    const view = new Uint8Array(wrapped);
    for (let i = 0; i < n; i++) view.set(items[i]!.wrapped, offsets[i]);
    return new Promise<Buffer[]>((resolve, reject) => {
      queue.push({ kekIndex: index, wrapped, offsets, resolve, reject });
      dispatch();
    });
  };

  return {
    targetKekId: keyring.currentId,
    threads,
    async rewrapBatch(items) {
      if (failed) throw new Error(`rewrap pool failed: ${failed.message}`, { cause: failed });
      if (closed) throw new Error('rewrap pool closed');
      const missing = items.find((it) => !kekIndex.has(it.kekId));
      if (missing) throw new Error(`rewrap pool: key-encryption key ${missing.kekId} is not loaded (the pool has ${kekIds.join(', ')})`);
      if (items.length === 0) return [];
      const size = Math.max(MIN_SLICE, Math.ceil(items.length / (threads * SLICES_PER_THREAD)));
      const slices: Promise<Buffer[]>[] = [];
      for (let at = 0; at < items.length; at += size) slices.push(run(items.slice(at, at + size)));
      return (await Promise.all(slices)).flat();
    },
    async close() {
      if (closed && slots.length === 0) return;
      await shutdown(new Error('rewrap pool closed'));
    },
  };
}

function unpack(wrapped: ArrayBuffer, offsets: Uint32Array): Buffer[] {
  const out: Buffer[] = new Array(offsets.length - 1);
  for (let i = 0; i < out.length; i++) out[i] = Buffer.from(wrapped, offsets[i]!, offsets[i + 1]! - offsets[i]!);
  return out;
}
