import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

/** What a sealed secret stores: never the data key in the clear. */
export interface SealedSecret {
  ciphertext: Buffer;
  iv: Buffer;
  tag: Buffer;
  wrappedKey: Buffer;
  kekId: string;
}

export interface KeyWrapper {
  wrap(dataKey: Buffer): { kekId: string; wrapped: Buffer };
  unwrap(kekId: string, wrapped: Buffer): Buffer | undefined;
}

export class SecretUnavailable extends Error {
  override name = 'SecretUnavailable';
  constructor(readonly reason: 'key_missing' | 'integrity') {
    super(reason === 'key_missing' ? 'the key that wrapped this secret is not loaded' : 'the secret failed its integrity check');
  }
}

/**
 * Envelope encryption: a fresh 256-bit data key per secret, AES-256-GCM with a random 96-bit IV and the
 * caller's additional authenticated data (so a ciphertext copied to another row or organisation does not
 * open), the data key wrapped by the key-encryption key.
 */
export function seal(plaintext: Buffer, aad: string, keys: KeyWrapper): SealedSecret {
  const dataKey = randomBytes(32);
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', dataKey, iv);
  cipher.setAAD(Buffer.from(aad, 'utf8'));
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  const { kekId, wrapped } = keys.wrap(dataKey);
  dataKey.fill(0);
  return { ciphertext, iv, tag: cipher.getAuthTag(), wrappedKey: wrapped, kekId };
}

export function open(sealed: SealedSecret, aad: string, keys: KeyWrapper): Buffer {
  let dataKey: Buffer | undefined;
  try {
    dataKey = keys.unwrap(sealed.kekId, sealed.wrappedKey);
  } catch {
    throw new SecretUnavailable('integrity');
  }
  if (!dataKey) throw new SecretUnavailable('key_missing');
  try {
    const decipher = createDecipheriv('aes-256-gcm', dataKey, sealed.iv);
    decipher.setAAD(Buffer.from(aad, 'utf8'));
    decipher.setAuthTag(sealed.tag);
    return Buffer.concat([decipher.update(sealed.ciphertext), decipher.final()]);
  } catch {
    throw new SecretUnavailable('integrity');
  } finally {
    dataKey.fill(0);
  }
}
