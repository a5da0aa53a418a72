// Worker thread of the rewrap pool (rewrap-pool.ts). Plain JavaScript so it loads the same under tsx, vitest
// and plain node, without a TypeScript loader in the worker.
//
// workerData: { privateKeys: [kekId, pkcs8Pem][], currentPublicKey: spkiPem }
// Message in:  { id, kekIndex: Uint16Array (index into privateKeys per item), wrapped: ArrayBuffer,
//                offsets: Uint32Array (n + 1 byte offsets into wrapped) }
// Message out: { id, wrapped: ArrayBuffer, offsets: Uint32Array } (transferred), or { id, error }
//
// Per item: RSA-OAEP (SHA-256) privateDecrypt with the item's key-encryption key, publicEncrypt of the data
// key with the current one, and the data key zeroed. Data keys never leave this thread.
import { constants, createPrivateKey, createPublicKey, privateDecrypt, publicEncrypt } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';

const OAEP = { padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' };
const privateKeys = workerData.privateKeys.map(([, pem]) => createPrivateKey(pem));
const kekIds = workerData.privateKeys.map(([id]) => id);
const currentPublicKey = createPublicKey(workerData.currentPublicKey);
// The PEMs are not needed any more once parsed into key objects.
workerData.privateKeys.length = 0;

parentPort.on('message', (msg) => {
  const { id, kekIndex, offsets } = msg;
  const input = Buffer.from(msg.wrapped);
  const n = kekIndex.length;
  const out = [];
  let total = 0;
  try {
    for (let i = 0; i < n; i++) {
      const key = privateKeys[kekIndex[i]];
      if (!key) throw new Error(`rewrap worker: no key-encryption key at index ${kekIndex[i]}`);
      const dataKey = privateDecrypt({ key, ...OAEP }, input.subarray(offsets[i], offsets[i + 1]));
      try {
        const wrapped = publicEncrypt({ key: currentPublicKey, ...OAEP }, dataKey);
        out.push(wrapped);
        total += wrapped.length;
      } finally {
        dataKey.fill(0);
      }
    }
  } catch (err) {
    // The key the item failed under, never the item itself.
    const at = out.length;
    parentPort.postMessage({ id, error: `${err instanceof Error ? err.message : String(err)} (item ${at} of this slice, kek ${kekIds[kekIndex[at]] ?? '?'})` });
    return;
  }
  const wrapped = new ArrayBuffer(total);
  const view = new Uint8Array(wrapped);
  const outOffsets = new Uint32Array(n + 1);
  let at = 0;
  for (let i = 0; i < n; i++) {
    view.set(out[i], at);
    at += out[i].length;
    outOffsets[i + 1] = at;
  }
  parentPort.postMessage({ id, wrapped, offsets: outOffsets }, [wrapped, outOffsets.buffer]);
});
