/**
 * The exporter's encoder thread (worker_threads): row groups in, encoded Parquet column
 * chunks out (HMACs, dictionaries, pages, snappy). Runs on the second core while the main
 * thread fetches, decodes and appends. See group-encoder.ts for the main thread's side.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { encodedTransferList, encodeRawGroup, type RawGroup } from './columnar-file.ts';
import { identifierHmac } from './hmac-sha256.ts';

const port = parentPort;
if (!port) throw new Error('encode-worker.ts runs as a worker thread');
const hmac = identifierHmac((workerData as { hmacKey: Uint8Array }).hmacKey);
port.on('message', (m: { id: number; raw: RawGroup }) => {
  try {
    const group = encodeRawGroup(m.raw, hmac);
    port.postMessage({ id: m.id, group }, encodedTransferList(group));
  } catch (err) {
    port.postMessage({ id: m.id, error: err instanceof Error ? err.message : String(err) });
  }
});
