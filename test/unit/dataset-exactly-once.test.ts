// Pure parts of the offline dataset: which offset may be committed, which records a replay
// skips, object names, and when a day may be sealed.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { PartitionState } from '../../services/exporter/partition-state.ts';
import { decideDayClosed } from '../../services/shared/dataset/day-closed.ts';
import { inRanges, mergeRanges } from '../../services/shared/dataset/manifest.ts';
import {
  baseName,
  daysBetween,
  exporterFileKey,
  isDate,
  parseExporterFileName,
} from '../../services/shared/dataset/object-keys.ts';

describe('PartitionState.durableOffset', () => {
  it('is the first offset not yet in S3: open and uploading files hold it back', () => {
    const p = new PartitionState(3, 1);
    assert.equal(p.commitCandidate(), undefined, 'nothing read yet');
    p.next = 120n;
    const a = { first: 100n, last: 110n };
    const b = { first: 105n, last: 119n };
    p.uploading.add(a);
    p.open.set('2026-01-02', b);
    assert.equal(p.durableOffset(), 100n);
    p.uploading.delete(a);
    assert.equal(p.durableOffset(), 105n);
    p.open.delete('2026-01-02');
    assert.equal(p.durableOffset(), 120n);
    p.committed = 120n;
    assert.equal(p.commitCandidate(), undefined, 'never commits the same offset twice, nor backwards');
  });

  it('never exceeds an offset whose record is not durable (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(1000), fc.nat(50), fc.boolean()), { maxLength: 8 }),
        fc.nat(2000),
        (files, next) => {
          const p = new PartitionState(0, 0);
          p.next = BigInt(next + 1100);
          files.forEach(([first, len, uploading], i) => {
            const f = { first: BigInt(first), last: BigInt(first + len) };
            if (uploading) p.uploading.add(f);
            else p.open.set(`d${i}`, f);
          });
          const d = p.durableOffset()!;
          for (const [first] of files) assert.ok(d <= BigInt(first));
          assert.ok(d <= p.next);
        },
      ),
    );
  });
});

describe('replay skipping', () => {
  it('merges covered ranges and finds offsets inside them', () => {
    const r = mergeRanges([
      [10n, 19n],
      [0n, 9n],
      [30n, 40n],
      [35n, 36n],
    ]);
    assert.deepEqual(r, [
      [0n, 19n],
      [30n, 40n],
    ]);
    assert.ok(inRanges(r, 19n) && inRanges(r, 30n) && !inRanges(r, 20n) && !inRanges(r, 41n));
  });
});

describe('object names', () => {
  it('carry partition and offset range, and parse back', () => {
    const key = exporterFileKey(
      'erasure_events',
      '2026-03-01',
      'privacy.erasure.requested.v1',
      7,
      5n,
      1234567890123n,
    );
    assert.equal(
      key,
      'erasure_events/dt=2026-03-01/part-privacy.erasure.requested.v1-p0007-o0000000000000000005-0000001234567890123.parquet',
    );
    assert.deepEqual(parseExporterFileName(baseName(key)), {
      topic: 'privacy.erasure.requested.v1',
      partition: 7,
      first: 5n,
      last: 1234567890123n,
    });
    assert.equal(parseExporterFileName('compacted-g000001-0001.parquet'), undefined);
    // Partitions past 9999 get a fifth digit; their files must still be recognised.
    const wide = exporterFileKey('erasure_events', '2026-03-01', 't', 12345, 1n, 2n);
    assert.equal(parseExporterFileName(baseName(wide))?.partition, 12345);
  });

  it('validates and enumerates dates', () => {
    assert.ok(isDate('2024-02-29') && !isDate('2023-02-29') && !isDate('2024-2-1'));
    assert.deepEqual(daysBetween('2024-02-28', '2024-03-01'), ['2024-02-28', '2024-02-29', '2024-03-01']);
  });
});

describe('decideDayClosed', () => {
  const end = Date.parse('2026-01-02T00:00:00Z');
  it('waits for the lateness allowance, then for every partition to be past the day', () => {
    assert.equal(decideDayClosed('2026-01-01', end + 1000, 3_600_000, []).closed, false);
    const parts = [
      { partition: 0, committed: 50n, firstAfter: 50n },
      { partition: 1, committed: 9n, firstAfter: 10n },
    ];
    const open = decideDayClosed('2026-01-01', end + 3_600_000, 3_600_000, parts);
    assert.equal(open.closed, false);
    assert.match(open.reason!, /partition\(s\) 1/);
    parts[1]!.committed = 10n;
    assert.equal(decideDayClosed('2026-01-01', end + 3_600_000, 3_600_000, parts).closed, true);
  });
  it('counts a partition with nothing left to read below its log start as past the day', () => {
    const at = end + 3_600_000;
    // Never had a record: no commit, log start = end = 0.
    const empty = [{ partition: 0, committed: -1n, firstAfter: 0n, low: 0n }];
    assert.equal(decideDayClosed('2026-01-01', at, 3_600_000, empty).closed, true);
    // Every record expired (log start 40), never committed: nothing below 40 can be read.
    const expired = [{ partition: 0, committed: -1n, firstAfter: 40n, low: 40n }];
    assert.equal(decideDayClosed('2026-01-01', at, 3_600_000, expired).closed, true);
    // Records still there below the first one after the day, and no commit: not closed.
    const unread = [{ partition: 0, committed: -1n, firstAfter: 40n, low: 10n }];
    assert.equal(decideDayClosed('2026-01-01', at, 3_600_000, unread).closed, false);
  });
});
