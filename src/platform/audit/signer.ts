import { createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkpointMessage, type CheckpointStatement } from '../../lib/audit/canonical.js';
import { loadEd25519Key } from '../keys/ed25519.js';

export interface AuditPublicKey {
  key_id: string;
  algorithm: 'Ed25519';
  public_key_pem: string;
  current: boolean;
}

/**
 * Signs audit checkpoints with an Ed25519 key kept outside the database. Every key ever used leaves its
 * public half in the public-keys directory (one PEM per key id), so checkpoints signed before a rotation
 * still verify and a third party can verify with nothing but that directory.
 */
export interface AuditSigner {
  readonly keyId: string;
  sign(statement: Omit<CheckpointStatement, 'key_id'>): { keyId: string; signature: string };
  /** Signs arbitrary bytes (export manifests); base64url. */
  signBytes(bytes: Buffer): string;
  /** 'ok', 'signature_invalid' or 'unknown_key'. */
  verify(statement: CheckpointStatement, signature: string): 'ok' | 'signature_invalid' | 'unknown_key';
  publicKeys(): AuditPublicKey[];
  /** Every public key by key id: the current one and those found in the public-keys directory. */
  readonly verificationKeys: Map<string, KeyObject>;
}

export const auditKeyId = (thumbprint: string) => `audit-ed25519-${thumbprint.slice(0, 16)}`;

/** Reads every `<key id>.pem` public key in a directory. */
export function readPublicKeyDir(dir: string): Map<string, KeyObject> {
  const keys = new Map<string, KeyObject>();
  if (!existsSync(dir)) return keys;
  for (const file of readdirSync(dir)) {
    if (!file.endsWith('.pem')) continue;
    keys.set(file.slice(0, -4), createPublicKey(readFileSync(join(dir, file), 'utf8')));
  }
  return keys;
}

export function verifyCheckpoint(keys: Map<string, KeyObject>, statement: CheckpointStatement, signature: string) {
  const key = keys.get(statement.key_id);
  if (!key) return 'unknown_key' as const;
  let ok = false;
  try {
    ok = verify(null, checkpointMessage(statement), key, Buffer.from(signature, 'base64url'));
  } catch {
    ok = false;
  }
  return ok ? ('ok' as const) : ('signature_invalid' as const);
}

export async function loadAuditSigner(source: { pem?: string; file?: string; dataDir: string; publicKeysDir: string }): Promise<AuditSigner & { origin: string }> {
  const key = await loadEd25519Key({
    pem: source.pem,
    file: source.file,
    dataDir: source.dataDir,
    fileName: 'audit-signing-ed25519.pem',
    envName: 'AUDIT_SIGNING_KEY',
  });
  const keyId = auditKeyId(key.thumbprint);
  const ownFile = join(source.publicKeysDir, `${keyId}.pem`);
  try {
    if (!existsSync(ownFile)) {
      mkdirSync(source.publicKeysDir, { recursive: true });
      writeFileSync(ownFile, key.publicPem);
    }
  } catch {
    // A read-only public-keys directory (production secret mount) is fine: the key is still served below.
  }
  const keys = readPublicKeyDir(source.publicKeysDir);
  keys.set(keyId, key.publicKey);
  return {
    keyId,
    origin: key.origin,
    sign(statement) {
      const signature = sign(null, checkpointMessage({ ...statement, key_id: keyId }), key.privateKey).toString('base64url');
      return { keyId, signature };
    },
    signBytes: (bytes) => sign(null, bytes, key.privateKey).toString('base64url'),
    verify: (statement, signature) => verifyCheckpoint(keys, statement, signature),
    verificationKeys: keys,
    publicKeys: () =>
      [...keys].map(([id, k]) => ({
        key_id: id,
        algorithm: 'Ed25519' as const,
        public_key_pem: k.export({ type: 'spki', format: 'pem' }).toString(),
        current: id === keyId,
      })),
  };
}
