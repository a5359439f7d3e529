/**
 * Object names of the dataset. Everything of one day is under `<prefix>/dt=YYYY-MM-DD/`:
 *   part-<topic>-p<partition>-o<first>-<last>.parquet  written by the exporter; the name is
 *       derived from the Kafka partition and the first and last offset it holds, so the
 *       exporter can tell after a crash which records are already durable (see exporter).
 *   compacted-g<generation>-<n>.parquet                 written by compaction
 *   backfill-g<generation>-<n>.parquet                  written by backfill
 *   _manifest.json                                      the day's complete file list (written last)
 *   _SUCCESS                                            empty marker: the directory's *.parquet are
 *       exactly the manifest's files (written by the sweep once no superseded file remains)
 * Offsets are zero-padded to 19 digits so names sort in offset order.
 */
export const MANIFEST_NAME = '_manifest.json';
export const SUCCESS_NAME = '_SUCCESS';

const DT = /^\d{4}-\d{2}-\d{2}$/;

/** A real day as YYYY-MM-DD: 2024-02-30, 2024-02-32 and 2024-13-01 are not (and never throw). */
export function isDate(dt: string): boolean {
  if (!DT.test(dt)) return false;
  const t = Date.parse(`${dt}T00:00:00Z`);
  return !Number.isNaN(t) && new Date(t).toISOString().slice(0, 10) === dt;
}

export function dayPrefix(prefix: string, dt: string): string {
  return `${prefix}/dt=${dt}/`;
}

const pad = (n: bigint | number, width: number) => String(n).padStart(width, '0');

/** Common start of every exporter file of one partition and day (for a LIST by prefix). */
export function partitionFilePrefix(prefix: string, dt: string, topic: string, partition: number): string {
  return `${dayPrefix(prefix, dt)}part-${topic}-p${pad(partition, 4)}-`;
}

export function exporterFileKey(
  prefix: string,
  dt: string,
  topic: string,
  partition: number,
  first: bigint,
  last: bigint,
): string {
  return `${partitionFilePrefix(prefix, dt, topic, partition)}o${pad(first, 19)}-${pad(last, 19)}.parquet`;
}

export interface ExporterFileName {
  topic: string;
  partition: number;
  first: bigint;
  last: bigint;
}

const EXPORTER_FILE = /^part-(.+)-p(\d{4,})-o(\d{19})-(\d{19})\.parquet$/;

/** The partition and offset range of an exporter file name (the part after `dt=…/`). */
export function parseExporterFileName(name: string): ExporterFileName | undefined {
  const m = EXPORTER_FILE.exec(name);
  if (!m) return undefined;
  return { topic: m[1]!, partition: Number(m[2]), first: BigInt(m[3]!), last: BigInt(m[4]!) };
}

export function generationFileName(kind: 'compacted' | 'backfill', generation: number, n: number): string {
  return `${kind}-g${pad(generation, 6)}-${pad(n, 4)}.parquet`;
}

/** A name generationFileName makes (a compaction's or a backfill's output). */
export function isGenerationFileName(name: string): boolean {
  return /^(compacted|backfill)-g\d+-\d+\.parquet$/.test(name);
}

/** The name within the day directory. */
export function baseName(key: string): string {
  return key.slice(key.lastIndexOf('/') + 1);
}

/** The days from `from` to `to`, inclusive (both YYYY-MM-DD). */
export function daysBetween(from: string, to: string): string[] {
  const out: string[] = [];
  for (let t = Date.parse(`${from}T00:00:00Z`); t <= Date.parse(`${to}T00:00:00Z`); t += 86_400_000)
    out.push(new Date(t).toISOString().slice(0, 10));
  return out;
}

export function addDays(dt: string, days: number): string {
  return new Date(Date.parse(`${dt}T00:00:00Z`) + days * 86_400_000).toISOString().slice(0, 10);
}
