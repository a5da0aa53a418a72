import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { calculateJwkThumbprint, exportJWK, type JWK } from 'jose';

export interface Ed25519KeySource {
  /** PEM text from the environment (`\n` escapes allowed). */
  pem?: string;
  /** Path of a PEM file. */
  file?: string;
  /** Where the embedded default keeps a generated key: DATA_DIR/keys/<fileName>, mode 0600. */
  dataDir: string;
  fileName: string;
  /** Name of the variable that carries the PEM, for messages. */
  envName: string;
}

export interface Ed25519Key {
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** RFC 7638 JWK thumbprint of the public key. */
  thumbprint: string;
  publicJwk: JWK;
  publicPem: string;
  origin: string;
}

/** Loads an Ed25519 private key from env or file, or generates one once under DATA_DIR/keys (mode 0600). */
export async function loadEd25519Key(source: Ed25519KeySource): Promise<Ed25519Key> {
  let pem: string;
  let origin: string;
  if (source.pem) {
    pem = source.pem.replace(/\\n/g, '\n');
    origin = source.envName;
  } else if (source.file) {
    pem = readFileSync(source.file, 'utf8');
    origin = source.file;
  } else {
    const dir = join(source.dataDir, 'keys');
    const file = join(dir, source.fileName);
    if (!existsSync(file)) {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      const { privateKey } = generateKeyPairSync('ed25519');
      writeFileSync(file, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600, flag: 'wx' });
    }
    chmodSync(file, 0o600);
    pem = readFileSync(file, 'utf8');
    origin = file;
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(pem);
  } catch {
    throw new Error(`the key from ${origin} is not a PEM private key`);
  }
  if (privateKey.asymmetricKeyType !== 'ed25519') {
    throw new Error(`the key from ${origin} must be an Ed25519 key, got ${privateKey.asymmetricKeyType}`);
  }
  const publicKey = createPublicKey(privateKey);
  const publicJwk = await exportJWK(publicKey);
  return {
    privateKey,
    publicKey,
    thumbprint: await calculateJwkThumbprint(publicJwk),
    publicJwk,
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    origin,
  };
}
