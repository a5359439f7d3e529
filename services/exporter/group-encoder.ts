/**
 * Where the exporter's row groups are encoded: a worker thread (encode-worker.ts), so that
 * HMACs, dictionaries and snappy (about a third of the exporter's CPU) overlap with Kafka
 * fetching and Avro decoding on the main thread; 2 cores are the target machine.
 *
 * Row groups are posted in shared memory (neither copied nor transferred), and kept until
 * their encoding comes back: if the worker cannot start or dies, the waiting groups and every
 * later one are encoded in-line instead (the encoding is pure, the bytes are the same), so a
 * worker failure costs speed, never rows. The worker also keeps each file's upload digests
 * (SHA-256 and CRC32 of 100 MB files were a few hundred ms of the main thread); a file it has
 * none for (it failed, or the file's groups were not all its own) is hashed in-line.
 */
import { Worker } from 'node:worker_threads';
import { inlineEncoder, type GroupEncoder } from './columnar-file.ts';

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
  /** Jobs posted and not answered: `inline` does one in-line (the worker failed). */
  interface Job {
    inline(): Promise<unknown>;
    resolve(result: unknown): void;
    reject(err: unknown): void;
  }
  const waiting = new Map<number, Job>();
  let next = 0;
  let worker: Worker | undefined;
  let failed = false;

  function redoInline(): void {
    for (const [id, job] of [...waiting]) {
      waiting.delete(id);
      job.inline().then(job.resolve, job.reject);
    }
  }

  function fallBack(reason: string): void {
    if (failed) return;
    failed = true;
    onFallback(reason);
    const w = worker;
    worker = undefined;
    void w?.terminate().catch(() => undefined);
    redoInline();
  }

  try {
    worker = new Worker(workerEntry(), { workerData: { hmacKey } });
    worker.unref();
    worker.on('message', (m: { id: number; result?: unknown; error?: string }) => {
      const job = waiting.get(m.id);
      if (!job) return;
      waiting.delete(m.id);
      if (m.result) job.resolve(m.result);
      else job.inline().then(job.resolve, job.reject); // the worker's error, retried here
    });
    worker.on('error', (err) => fallBack(err.message));
    worker.on('exit', (code) => fallBack(`encoder thread exited (${code})`));
  } catch (err) {
    fallBack(err instanceof Error ? err.message : String(err));
  }

  function post<T>(message: object, doInline: () => Promise<T>): Promise<T> {
    if (!worker) return doInline();
    const id = next++;
    return new Promise<T>((resolve, reject) => {
      waiting.set(id, { inline: doInline, resolve: resolve as (r: unknown) => void, reject });
      worker!.postMessage({ id, ...message });
    });
  }

  return {
    encode: (raw, file, seq) => post({ raw, file, seq }, () => inline.encode(raw, file, seq)),
    digest: (file, groups, footer, bytes) =>
      post({ digest: { file, groups, footer } }, () => inline.digest(file, groups, footer, bytes)),
    async close() {
      const w = worker;
      failed = true; // what is still waiting is done in-line
      worker = undefined;
      redoInline();
      await w?.terminate().catch(() => undefined);
    },
  };
}
