import type { KeyObject } from 'node:crypto';
import { hashAuditRecord, type CheckpointStatement, type HashedAuditFields } from './canonical.js';
import { verifyCheckpoint } from '../../platform/audit/signer.js';

export const FAILURE_KINDS = [
  'hash_mismatch',
  'link_break',
  'missing_seq',
  'checkpoint_mismatch',
  'signature_invalid',
  'unknown_key',
  'format_invalid',
  'manifest_mismatch',
] as const;
export type FailureKind = (typeof FAILURE_KINDS)[number];

export interface VerifyFailure {
  seq: number;
  kind: FailureKind;
  expected: string | null;
  actual: string | null;
}

export type VerifiableRecord = HashedAuditFields & { current_hash: string };
export type SignedCheckpoint = CheckpointStatement & { signature: string };

/**
 * Walks one chain in seq order and remembers the earliest failure. It holds only the previous hash and the
 * hashes at checkpoint positions, so memory stays flat however long the chain is. The API verifier feeds it
 * rows from the database; the offline verifier feeds it lines of an export.
 */
export class ChainVerifier {
  private expectedSeq: number;
  private previousHash: string;
  private readonly hashAt = new Map<number, string>();
  private readonly checkpointSeqs: Set<number>;
  private first: VerifyFailure | null = null;
  checked = 0;
  lastSeq: number;
  lastHash: string;

  constructor(
    readonly chainId: string,
    fromSeq: number,
    previousHash: string,
    private readonly checkpoints: SignedCheckpoint[],
  ) {
    this.expectedSeq = fromSeq;
    this.previousHash = previousHash;
    this.lastSeq = fromSeq - 1;
    this.lastHash = previousHash;
    this.checkpointSeqs = new Set(checkpoints.map((c) => c.seq));
  }

  fail(failure: VerifyFailure) {
    if (!this.first || failure.seq < this.first.seq) this.first = failure;
  }

  push(record: VerifiableRecord) {
    const { current_hash, ...fields } = record;
    this.pushFields(fields, current_hash);
  }

  /** push() without building a record object: the fields exactly as hashed, and the stored hash. */
  pushFields(fields: HashedAuditFields, current_hash: string) {
    this.pushHashed(fields.seq, fields.previous_hash, current_hash, hashAuditRecord(fields));
  }

  /**
   * A record whose hash was recomputed by the caller (PostgreSQL, for POST /audit/verify): `recomputed` is
   * the SHA-256 of its canonical serialisation, `currentHash` the stored one.
   */
  pushHashed(seq: number, previousHash: string, currentHash: string, recomputed: string) {
    this.checked++;
    if (seq !== this.expectedSeq) {
      this.fail({ seq: this.expectedSeq, kind: 'missing_seq', expected: String(this.expectedSeq), actual: String(seq) });
    }
    if (recomputed !== currentHash) {
      this.fail({ seq, kind: 'hash_mismatch', expected: recomputed, actual: currentHash });
    } else if (previousHash !== this.previousHash) {
      this.fail({ seq, kind: 'link_break', expected: this.previousHash, actual: previousHash });
    }
    if (this.checkpointSeqs.has(seq)) this.hashAt.set(seq, currentHash);
    this.previousHash = currentHash;
    this.expectedSeq = seq + 1;
    this.lastSeq = seq;
    this.lastHash = currentHash;
  }

  /**
   * `count` records that follow the last one pushed and were checked elsewhere, all found intact: consecutive
   * seqs, each hash recomputed and equal to the stored one, each previous_hash the hash before it, and none at
   * a checkpoint's seq. The last of them has `lastSeq` and `lastHash`.
   */
  skipVerified(count: number, lastSeq: number, lastHash: string) {
    if (count <= 0) return;
    this.checked += count;
    this.previousHash = lastHash;
    this.expectedSeq = lastSeq + 1;
    this.lastSeq = lastSeq;
    this.lastHash = lastHash;
  }

  /**
   * Ends the walk. `expectedLastSeq` is what the chain should reach (the head row, the newest checkpoint);
   * stopping short of it means the newest records were removed.
   */
  finish(publicKeys: Map<string, KeyObject>, expectedLastSeq: number) {
    const anchoredEnd = Math.max(expectedLastSeq, ...this.checkpoints.map((c) => c.seq));
    if (this.lastSeq < anchoredEnd) {
      this.fail({ seq: this.lastSeq + 1, kind: 'missing_seq', expected: String(anchoredEnd), actual: String(this.lastSeq) });
    }
    for (const c of this.checkpoints) {
      const signature = verifyCheckpoint(publicKeys, c, c.signature);
      if (signature !== 'ok') {
        this.fail({ seq: c.seq, kind: signature, expected: c.key_id, actual: c.signature });
        continue;
      }
      const actual = this.hashAt.get(c.seq);
      if (actual !== undefined && actual !== c.head_hash) {
        this.fail({ seq: c.seq, kind: 'checkpoint_mismatch', expected: c.head_hash, actual });
      }
    }
    return { ok: this.first === null, checked: this.checked, firstFailure: this.first, checkpointsChecked: this.checkpoints.length };
  }
}
