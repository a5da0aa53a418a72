import { constants, createHash, createPrivateKey, createPublicKey, generateKeyPairSync, privateDecrypt, publicEncrypt, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const KEK_BITS = 3072;
const OAEP = { padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' } as const;

export interface KeyEncryptionKey {
  id: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
  file: string;
}

/** kek-<first 16 hex of SHA-256 over the public key's SPKI DER>: stable, and derivable by anyone holding the key. */
export const kekIdOf = (publicKey: KeyObject) =>
  `kek-${createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest('hex').slice(0, 16)}`;

/**
 * The vault's key-encryption keys: RSA private keys (PEM, one per file) in a directory outside the database.
 * Several can be loaded so data keys wrapped under older ones still open; exactly one is current for new
 * wraps — CREDENTIAL_CURRENT_KEY_ID, else the id in the directory's CURRENT file, else the only key.
 */
export class Keyring {
  private constructor(
    readonly dir: string,
    private readonly keys: Map<string, KeyEncryptionKey>,
    readonly currentId: string,
  ) {}

  static load(dir: string, options: { currentKeyId?: string; generateIfMissing: boolean }): Keyring {
    if (!existsSync(dir) || readdirSync(dir).filter((f) => f.endsWith('.pem')).length === 0) {
      if (!options.generateIfMissing) throw new Error(`no key-encryption key (*.pem) in ${dir}`);
      generateKek(dir, true);
    }
    const keys = new Map<string, KeyEncryptionKey>();
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.pem')).sort()) {
      const path = join(dir, file);
      const privateKey = createPrivateKey(readFileSync(path, 'utf8'));
      if (privateKey.asymmetricKeyType !== 'rsa') throw new Error(`${path} is not an RSA private key`);
      const publicKey = createPublicKey(privateKey);
      const id = kekIdOf(publicKey);
      keys.set(id, { id, privateKey, publicKey, file: path });
    }
    const currentFile = join(dir, 'CURRENT');
    const currentId = options.currentKeyId ?? (existsSync(currentFile) ? readFileSync(currentFile, 'utf8').trim() : keys.size === 1 ? [...keys.keys()][0]! : '');
    if (!keys.has(currentId)) throw new Error(`the current key-encryption key ${currentId || '(unset)'} is not among the keys in ${dir}: set CREDENTIAL_CURRENT_KEY_ID`);
    return new Keyring(dir, keys, currentId);
  }

  has(id: string) {
    return this.keys.has(id);
  }

  get ids() {
    return [...this.keys.keys()];
  }

  /** RSA-OAEP (SHA-256) wrap of a data key under the current key. */
  wrap(dataKey: Buffer): { kekId: string; wrapped: Buffer } {
    const kek = this.keys.get(this.currentId)!;
    return { kekId: kek.id, wrapped: publicEncrypt({ key: kek.publicKey, ...OAEP }, dataKey) };
  }

  /** Undefined when the key is not loaded (the credential then needs re-entry). */
  unwrap(kekId: string, wrapped: Buffer): Buffer | undefined {
    const kek = this.keys.get(kekId);
    return kek ? privateDecrypt({ key: kek.privateKey, ...OAEP }, wrapped) : undefined;
  }

  privateKeyPem(kekId: string): string | undefined {
    return this.keys.get(kekId)?.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  }

  currentPublicKeyPem(): string {
    return this.keys.get(this.currentId)!.publicKey.export({ type: 'spki', format: 'pem' }).toString();
  }
}

/** Writes a new RSA key-encryption key (mode 0600) into `dir`; with makeCurrent, records it in CURRENT. */
export function generateKek(dir: string, makeCurrent: boolean): string {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: KEK_BITS });
  const id = kekIdOf(publicKey);
  writeFileSync(join(dir, `${id}.pem`), privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600, flag: 'wx' });
  if (makeCurrent) writeFileSync(join(dir, 'CURRENT'), `${id}\n`, { mode: 0o600 });
  return id;
}
