import type { Database, DbOrTx } from '../../db/client.js';
import type { HashedAuditFields } from '../../lib/audit/canonical.js';
import type { ChainVerifier } from '../../lib/audit/verify.js';
import { readChainFields } from './chain.js';
import { recordJsonSql } from './record-json-sql.js';

/**
 * The canonical serialisation of a record (docs/audit.md), built by PostgreSQL from the stored columns: every
 * field but current_hash, keys in RFC 8785 order.
 */
const CANONICAL_RECORD_SQL = recordJsonSql([
  'action', 'actor_type', 'chain_id', 'created_at', 'details', 'id', 'ip_address', 'organization_id',
  'previous_hash', 'request_id', 'resource_id', 'resource_type', 'seq', 'user_agent', 'user_id',
], { hashedOnly: true });

/**
 * One range of a chain, hashed and linked by PostgreSQL. Only the rows worth a look come back: the first of
 * the range, the last, those at a checkpoint's seq, and any whose hash, link to the row before or seq
 * differs. `n` numbers the rows of the range, so the rows between two returned ones are known to be intact.
 * A NULL where the schema allows none counts as a change: the JSON text shows it as null, and a NULL stored
 * hash is a mismatch.
 */
const CHECK_RANGE_SQL = `with checked as (
  select seq, previous_hash, current_hash,
         coalesce(encode(sha256(convert_to(${CANONICAL_RECORD_SQL}, 'UTF8')), 'hex') = current_hash, false) as hash_ok,
         lag(seq) over w as prev_seq, lag(current_hash) over w as prev_hash, lead(seq) over w is null as is_last,
         row_number() over w as n
  from audit_records
  where chain_id = $1 and seq >= $2 and seq <= $3
  window w as (order by seq)
)
select seq, previous_hash, current_hash, hash_ok, prev_seq, prev_hash, n
from checked
where n = 1 or is_last or not hash_ok or previous_hash <> prev_hash or seq <> prev_seq + 1 or seq = any($4::bigint[])
order by seq`;

interface CheckedRow {
  seq: string | number;
  previous_hash: string;
  current_hash: string;
  hash_ok: boolean;
  prev_seq: string | number | null;
  prev_hash: string | null;
  n: string | number;
}

/** Records per range (by default): a range's interesting rows are held at once. */
const RANGE = 25_000;
/** Ranges checked at once, each on a connection of its own. */
const RANGES_IN_FLIGHT = 2;
/** Ranges started and not yet pushed (running or done): bounds what is held when the pushing falls behind. */
const RANGES_AHEAD = 4;

/**
 * Feeds seqs fromSeq..toSeq of a chain to `verifier` with the hashing done by PostgreSQL, two ranges at a
 * time on two connections: memory holds only the rows worth a look, and the service's CPU does almost
 * nothing per record. A connection whose range is done starts the next one at once, whichever range the
 * pushing waits for, so neither connection waits for the other. A record whose hash PostgreSQL finds
 * different is hashed again here from its fields (hashAuditRecord), which decides: the service's canonical
 * serialisation is the reference, and a record whose stored details text is not canonical (written before
 * migration 0006) still verifies. Returns how many records were hashed here.
 */
export async function verifyRangeInDatabase(
  database: Database,
  db: DbOrTx,
  verifier: ChainVerifier,
  chainId: string,
  fromSeq: number,
  toSeq: number,
  checkpointSeqs: number[],
  rangeSize = RANGE,
): Promise<{ rehashed: number }> {
  const ranges: [number, number][] = [];
  for (let lo = fromSeq; lo <= toSeq; lo += rangeSize) ranges.push([lo, Math.min(toSeq, lo + rangeSize - 1)]);
  const check = ([lo, hi]: [number, number]) =>
    database.query<CheckedRow>(CHECK_RANGE_SQL, [chainId, lo, hi, checkpointSeqs.filter((s) => s >= lo && s <= hi)], { long: true });

  const started: Promise<CheckedRow[]>[] = [];
  let running = 0;
  let pushed = 0;
  let stopped = false;
  const startMore = () => {
    while (!stopped && running < RANGES_IN_FLIGHT && started.length < ranges.length && started.length - pushed < RANGES_AHEAD) {
      const rows = check(ranges[started.length]!);
      running++;
      const settled = () => {
        running--;
        startMore();
      };
      // A rejection is handled when its range's turn comes (or never, if an earlier one failed).
      rows.then(settled, settled);
      started.push(rows);
    }
  };
  let rehashed = 0;
  try {
    for (; pushed < ranges.length; pushed++) {
      startMore();
      const rows = await started[pushed]!;
      delete started[pushed]; // pushed: its rows can go
      rehashed += await pushRange(db, verifier, chainId, rows);
    }
  } finally {
    stopped = true;
  }
  return { rehashed };
}

/** Records read at once to hash again here: the rows after the first one to hash are likely to need it too. */
const REHASH_WINDOW = 1000;

async function pushRange(db: DbOrTx, verifier: ChainVerifier, chainId: string, rows: CheckedRow[]): Promise<number> {
  let rehashed = 0;
  let lastN = 0;
  let window = new Map<number, { fields: HashedAuditFields; currentHash: string }>();
  for (const r of rows) {
    const seq = Number(r.seq);
    const n = Number(r.n);
    if (n > lastN + 1) verifier.skipVerified(n - lastN - 1, Number(r.prev_seq), r.prev_hash!);
    lastN = n;
    if (r.hash_ok) {
      verifier.pushHashed(seq, r.previous_hash, r.current_hash, r.current_hash);
      continue;
    }
    rehashed++;
    if (!window.has(seq)) {
      window = new Map();
      for await (const batch of readChainFields(db, chainId, seq, seq + REHASH_WINDOW - 1, REHASH_WINDOW)) {
        for (const record of batch) window.set(record.fields.seq, record);
      }
    }
    const record = window.get(seq);
    if (!record) throw new Error(`audit record ${chainId}#${seq} disappeared during verification`);
    verifier.pushFields(record.fields, record.currentHash);
  }
  return rehashed;
}
