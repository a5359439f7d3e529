/**
 * What the exporter knows about one Kafka partition it owns: the files it is filling (one per
 * day, since a partition's records can straddle midnight), the files being uploaded, and the
 * next offset to read. Pure bookkeeping, unit-tested on its own.
 *
 * The offset that may be committed is the smallest offset not yet durable: the first offset
 * of any open or uploading file, else the next offset to read. Every record below it is in
 * an object S3 acknowledged (or was skipped because an earlier object already holds it), so
 * committing it can never lose a record; records at or above it are read again after a
 * crash, and the recovery rule (exporter's README section, export-loop.ts) keeps them from
 * being written twice.
 */
export interface FileSpan {
  /** First offset in the file. Files of one (partition, day) never overlap. */
  first: bigint;
}

export class PartitionState<F extends FileSpan = FileSpan> {
  /** Open files by day (YYYY-MM-DD). */
  readonly open = new Map<string, F>();
  /** Files handed to the uploader and not yet acknowledged. */
  readonly uploading = new Set<F>();
  /** Next offset to read; undefined until the first record of this assignment. */
  next: bigint | undefined;
  /** Offset last committed by this process in this assignment. */
  committed: bigint | undefined;
  /** The last batch reached the high watermark: files opened now are a quiet topic's trickle. */
  caughtUp = false;
  /** Offset ranges already durable, per day: exporter files and compacted coverage. */
  readonly covered = new Map<string, [bigint, bigint][]>();
  /** When this assignment last read each day's manifest (clock ms), and the days it found sealed. */
  readonly manifestReadAt = new Map<string, number>();
  readonly sealedDays = new Set<string>();

  constructor(
    readonly partition: number,
    readonly generation: number,
  ) {}

  /** The offset to commit: nothing below it is waiting to become durable. */
  durableOffset(): bigint | undefined {
    let low = this.next;
    for (const f of this.open.values()) if (low === undefined || f.first < low) low = f.first;
    for (const f of this.uploading) if (low === undefined || f.first < low) low = f.first;
    return low;
  }

  /** The offset to commit if it moved past the last commit; undefined when there is nothing new. */
  commitCandidate(): bigint | undefined {
    const d = this.durableOffset();
    if (d === undefined) return undefined;
    return this.committed === undefined || d > this.committed ? d : undefined;
  }
}
