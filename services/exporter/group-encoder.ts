/**
 * Where the exporter's row groups are encoded: a worker thread (encode-worker.ts), so that
 * HMACs, dictionaries and snappy (about a third of the exporter's CPU) overlap with Kafka
 * fetching and Avro decoding on the main thread; 2 cores are the target machine.
 *
 * Row groups are posted as copies (not transferred), and kept until their encoding comes
 * back: if the worker cannot start or dies, the waiting groups and every later one are
 * encoded in-line instead (the encoding is pure, the bytes are the same), so a worker
 * failure costs speed, never rows.
 */
import { Worker } from 'node:worker_threads';
import { inlineEncoder, type EncodedGroup, type GroupEncoder, type RawGroup } from './columnar-file.ts';

export interface ClosableEncoder extends GroupEncoder {
  /** Stops the worker; groups still waiting are encoded in-line. */
  close(): Promise<void>;
}

/**
 * The worker's entry. The sources are TypeScript run by tsx, and a worker thread does not
 * inherit the tsx loader hooks of `--import tsx`: a small ESM module registers tsx in the
 * worker first (tsx's own API), then loads encode-worker.ts.
 */
function workerEntry(): URL {
  const entry = new URL('./encode-worker.ts', import.meta.url).href;
  const tsx = import.meta.resolve('tsx/esm/api');
  const src = `import { register } from ${JSON.stringify(tsx)};\nregister();\nawait import(${JSON.stringify(entry)});\n`;
  return new URL(`data:text/javascript,${encodeURIComponent(src)}`);
}

export function workerEncoder(
  hmacKey: Uint8Array,
  onFallback: (reason: string) => void = () => undefined,
): ClosableEncoder {
  const inline = inlineEncoder(hmacKey);
  const waiting = new Map<
    number,
    { raw: RawGroup; resolve: (g: EncodedGroup) => void; reject: (e: unknown) => void }
  >();
  let next = 0;
  let worker: Worker | undefined;
  let failed = false;

  function fallBack(reason: string): void {
    if (failed) return;
    failed = true;
    onFallback(reason);
    const w = worker;
    worker = undefined;
    void w?.terminate().catch(() => undefined);
    for (const [id, job] of [...waiting]) {
      waiting.delete(id);
      inline.encode(job.raw).then(job.resolve, job.reject);
    }
  }

  try {
    worker = new Worker(workerEntry(), { workerData: { hmacKey } });
    worker.unref();
    worker.on('message', (m: { id: number; group?: EncodedGroup; error?: string }) => {
      const job = waiting.get(m.id);
      if (!job) return;
      waiting.delete(m.id);
      if (m.group) job.resolve(m.group);
      else inline.encode(job.raw).then(job.resolve, job.reject); // the worker's error, retried here
    });
    worker.on('error', (err) => fallBack(err.message));
    worker.on('exit', (code) => fallBack(`encoder thread exited (${code})`));
  } catch (err) {
    fallBack(err instanceof Error ? err.message : String(err));
  }

  return {
    encode(raw: RawGroup): Promise<EncodedGroup> {
      if (!worker) return inline.encode(raw);
      const id = next++;
      return new Promise((resolve, reject) => {
        waiting.set(id, { raw, resolve, reject });
        worker!.postMessage({ id, raw });
      });
    },
    async close() {
      const w = worker;
      failed = true; // what is still waiting is encoded in-line
      worker = undefined;
      for (const [id, job] of [...waiting]) {
        waiting.delete(id);
        inline.encode(job.raw).then(job.resolve, job.reject);
      }
      await w?.terminate().catch(() => undefined);
    },
  };
}
