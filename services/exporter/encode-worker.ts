/**
 * The exporter's encoder thread (worker_threads): row groups in (shared memory), encoded and
 * laid-out Parquet row groups out (HMACs, dictionaries, pages, snappy; transferred back).
 * It also keeps each file's upload digests, fed with every row group it encodes, so the
 * main thread does not hash whole files. Runs on the second core while the main thread
 * fetches, decodes and appends. See group-encoder.ts for the main thread's side.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { encodeRawGroup, FileDigester, type RawGroup } from './columnar-file.ts';
import { identifierHmac } from './hmac-sha256.ts';

const port = parentPort;
if (!port) throw new Error('encode-worker.ts runs as a worker thread');
const hmac = identifierHmac((workerData as { hmacKey: Uint8Array }).hmacKey);

/**
 * Digests of files being written, oldest first. A file dropped without being finished (a
 * rebalance) leaves its entry; past MAX_FILES the oldest go, and a file whose digests are
 * not here is hashed on the main thread instead (correct, only slower).
 */
const digesters = new Map<number, FileDigester>();
const MAX_FILES = 1024;

type Message =
  | { id: number; raw: RawGroup; file: number; seq: number }
  | { id: number; digest: { file: number; groups: number; footer: Uint8Array } };

port.on('message', (m: Message) => {
  try {
    if ('raw' in m) {
      const group = encodeRawGroup(m.raw, hmac);
      let d = digesters.get(m.file);
      if (m.seq === 0) {
        d = new FileDigester();
        digesters.set(m.file, d);
        if (digesters.size > MAX_FILES) digesters.delete(digesters.keys().next().value!);
      }
      if (d && d.groups === m.seq) {
        d.update(group.bytes);
        d.groups++;
      } else digesters.delete(m.file); // a group it did not see: the main thread hashes
      port.postMessage({ id: m.id, result: group }, [group.bytes.buffer as ArrayBuffer]);
    } else {
      const { file, groups, footer } = m.digest;
      const d = digesters.get(file);
      digesters.delete(file);
      if (!d || d.groups !== groups) throw new Error('no digests kept for this file');
      port.postMessage({ id: m.id, result: d.digest(footer) });
    }
  } catch (err) {
    if ('raw' in m) digesters.delete(m.file);
    port.postMessage({ id: m.id, error: err instanceof Error ? err.message : String(err) });
  }
});
