import { createHash, verify, type KeyObject } from 'node:crypto';
import { canonicalJson, GENESIS_HASH } from './canonical.js';
import { ChainVerifier, type VerifyFailure, type VerifiableRecord } from './verify.js';

export interface ExportVerification {
  ok: boolean;
  chainId: string | null;
  records: number;
  firstSeq: number | null;
  lastSeq: number | null;
  keyId: string | null;
  checkpointSeq: number | null;
  firstFailure: VerifyFailure | null;
}

const failure = (seq: number, kind: VerifyFailure['kind'], expected: string | null, actual: string | null): VerifyFailure => ({ seq, kind, expected, actual });

/**
 * Verifies an NDJSON audit export line by line (constant memory): every record's hash, the links between
 * consecutive records, the records digest and signature of the closing manifest, and the checkpoint it
 * carries. Used by `npm run audit:verify` and by the tests.
 */
export async function verifyExport(lines: AsyncIterable<string>, keys: Map<string, KeyObject>): Promise<ExportVerification> {
  let verifier: ChainVerifier | null = null;
  let first: VerifyFailure | null = null;
  const fail = (f: VerifyFailure) => {
    if (!first || f.seq < first.seq) first = f;
  };
  const digest = createHash('sha256');
  let records = 0;
  let firstSeq: number | null = null;
  let lastSeq: number | null = null;
  let previous: VerifiableRecord | null = null;
  let manifest: Record<string, any> | null = null;
  let lineNo = 0;
  let firstGap: number | null = null;

  for await (const raw of lines) {
    lineNo++;
    if (raw.trim() === '') continue;
    let entry: Record<string, any>;
    try {
      entry = JSON.parse(raw);
    } catch {
      fail(failure(lastSeq === null ? 0 : lastSeq + 1, 'format_invalid', 'a JSON line', `line ${lineNo}`));
      continue;
    }
    if (manifest) {
      fail(failure(lastSeq ?? 0, 'format_invalid', 'nothing after the manifest', `line ${lineNo}`));
      continue;
    }
    if (entry.type === 'manifest') {
      manifest = entry;
      continue;
    }
    const { type, ...record } = entry as VerifiableRecord & { type: string };
    if (type !== 'record' || typeof record.seq !== 'number' || typeof record.current_hash !== 'string') {
      fail(failure(lastSeq === null ? 0 : lastSeq + 1, 'format_invalid', 'a record line', `line ${lineNo}`));
      continue;
    }
    records++;
    firstSeq ??= record.seq;
    digest.update(`${record.current_hash}\n`);
    // Consecutive records are checked as a chain; across a gap (a filtered export) only each record's own hash.
    if (previous && record.seq === previous.seq + 1 && verifier) {
      verifier.push(record);
    } else {
      if (verifier) mergeInto(verifier.finish(new Map(), 0).firstFailure);
      verifier = new ChainVerifier(record.chain_id, record.seq, record.seq === 1 ? GENESIS_HASH : record.previous_hash, []);
      verifier.push(record);
      if (previous && record.seq <= previous.seq) fail(failure(record.seq, 'missing_seq', String(previous.seq + 1), String(record.seq)));
      if (previous && record.seq > previous.seq + 1) firstGap ??= previous.seq + 1;
    }
    previous = record;
    lastSeq = record.seq;
  }
  if (verifier) mergeInto(verifier.finish(new Map(), 0).firstFailure);

  function mergeInto(f: VerifyFailure | null) {
    if (f) fail(f);
  }

  let checkpointSeq: number | null = null;
  if (!manifest) {
    fail(failure(lastSeq ?? 0, 'manifest_mismatch', 'a closing manifest', 'none (file truncated?)'));
  } else {
    const m = manifest as Record<string, any>;
    const { signature, ...unsigned } = m;
    const key = keys.get(m.key_id);
    if (!key) fail(failure(lastSeq ?? 0, 'unknown_key', String(m.key_id), null));
    else if (typeof signature !== 'string' || !safeVerify(key, Buffer.from(canonicalJson(unsigned), 'utf8'), signature)) {
      fail(failure(lastSeq ?? 0, 'signature_invalid', 'manifest signature', String(signature)));
    }
    const recordsDigest = digest.digest('hex');
    if (m.records_digest !== recordsDigest || m.count !== records || m.first_seq !== firstSeq || m.last_seq !== lastSeq) {
      fail(failure(lastSeq ?? 0, 'manifest_mismatch', `${m.count} records, digest ${m.records_digest}`, `${records} records, digest ${recordsDigest}`));
    }
    if (m.checkpoint) {
      const c = m.checkpoint;
      checkpointSeq = c.seq;
      const cpKey = keys.get(c.key_id);
      const statement = canonicalJson({ type: 'budapp-audit-checkpoint/v1', chain_id: c.chain_id, seq: c.seq, head_hash: c.head_hash, signed_at: c.signed_at, key_id: c.key_id });
      if (!cpKey) fail(failure(c.seq, 'unknown_key', String(c.key_id), null));
      else if (!safeVerify(cpKey, Buffer.from(statement, 'utf8'), c.signature)) fail(failure(c.seq, 'signature_invalid', 'checkpoint signature', String(c.signature)));
      if (Object.keys(m.filters ?? {}).length === 0 && lastSeq !== null && c.seq === lastSeq && previous && previous.current_hash !== c.head_hash) {
        fail(failure(c.seq, 'checkpoint_mismatch', c.head_hash, previous.current_hash));
      }
    }
    // An unfiltered export is the whole chain: it starts at 1 and has no gaps.
    if (Object.keys(m.filters ?? {}).length === 0) {
      if (firstSeq !== null && firstSeq !== 1) fail(failure(1, 'missing_seq', '1', String(firstSeq)));
      if (firstGap !== null) fail(failure(firstGap, 'missing_seq', String(firstGap), 'absent'));
    }
  }
  const recomputedOk = first === null;
  return {
    ok: recomputedOk,
    chainId: (manifest as Record<string, any> | null)?.chain_id ?? previous?.chain_id ?? null,
    records,
    firstSeq,
    lastSeq,
    keyId: (manifest as Record<string, any> | null)?.key_id ?? null,
    checkpointSeq,
    firstFailure: first,
  };
}

function safeVerify(key: KeyObject, bytes: Buffer, signature: string): boolean {
  try {
    return verify(null, bytes, key, Buffer.from(signature, 'base64url'));
  } catch {
    return false;
  }
}
