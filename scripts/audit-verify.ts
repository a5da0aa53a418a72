/**
 * Verifies an NDJSON audit export offline.
 *   npm run audit:verify -- <export.ndjson> [--public-key <pem file or directory>]...
 * Without --public-key it uses the public keys under $DATA_DIR/keys/audit-public (default ./data).
 * Exit code 0: intact. 1: tampered or incomplete (the first failure is printed). 2: usage error.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { verifyExport } from '../src/lib/audit/export-verify.js';
import { readPublicKeyDir, auditKeyId } from '../src/platform/audit/signer.js';
import { calculateJwkThumbprint, exportJWK } from 'jose';

async function loadKeys(sources: string[]): Promise<Map<string, KeyObject>> {
  const keys = new Map<string, KeyObject>();
  for (const source of sources) {
    if (!existsSync(source)) throw new Error(`no such public key file or directory: ${source}`);
    if (statSync(source).isDirectory()) {
      for (const [id, key] of readPublicKeyDir(source)) keys.set(id, key);
      continue;
    }
    const key = createPublicKey(readFileSync(source, 'utf8'));
    keys.set(auditKeyId(await calculateJwkThumbprint(await exportJWK(key))), key);
  }
  return keys;
}

async function main(argv: string[]): Promise<number> {
  const files: string[] = [];
  const keySources: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--public-key') {
      const next = argv[++i];
      if (!next) return usage('--public-key needs a file or directory');
      keySources.push(next);
    } else if (arg === '--help' || arg === '-h') {
      return usage();
    } else files.push(arg);
  }
  if (files.length !== 1) return usage('give exactly one export file');
  const file = files[0]!;
  if (!existsSync(file)) return usage(`no such file: ${file}`);
  if (keySources.length === 0) keySources.push(`${process.env.DATA_DIR ?? './data'}/keys/audit-public`);

  let keys: Map<string, KeyObject>;
  try {
    keys = await loadKeys(keySources);
  } catch (err) {
    return usage((err as Error).message);
  }
  const lines = createInterface({ input: createReadStream(file, 'utf8'), crlfDelay: Infinity });
  const result = await verifyExport(lines, keys);
  const range = result.firstSeq === null ? 'no records' : `${result.records} records, seq ${result.firstSeq}–${result.lastSeq}`;
  if (result.ok) {
    process.stdout.write(`OK   ${file}: chain ${result.chainId}, ${range}; manifest signed by ${result.keyId}; checkpoint at seq ${result.checkpointSeq ?? 'none'}\n`);
    return 0;
  }
  const f = result.firstFailure!;
  process.stdout.write(`FAIL ${file}: chain ${result.chainId}, ${range}\n     first failure at seq ${f.seq}: ${f.kind} (expected ${f.expected ?? '-'}, found ${f.actual ?? '-'})\n`);
  return 1;
}

function usage(problem?: string): number {
  if (problem) process.stderr.write(`audit:verify: ${problem}\n`);
  process.stderr.write('usage: npm run audit:verify -- <export.ndjson> [--public-key <pem file or directory>]...\n');
  return 2;
}

main(process.argv.slice(2)).then((code) => process.exit(code));
