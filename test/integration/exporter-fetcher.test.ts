// The exporter's own Kafka fetcher against the real broker, on record batches another client
// wrote: kafkajs producing plain and gzip batches, and transactions, one committed and one
// aborted. The fetcher must hand over exactly the committed records, in offset order, with
// their values and timestamps, and move past the control records to the end of the log.
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { CompressionTypes, type Admin } from 'kafkajs';
import { PartitionFetcher } from '../../services/exporter/kafka-fetch/partition-fetcher.ts';
import type { FetchedRecords } from '../../services/exporter/kafka-fetch/fetch-wire.ts';
import { createLogger } from '../../services/shared/logger.ts';
import { testKafka, topicEnd, uniqueName } from '../helpers/infra.ts';

const kafka = testKafka();

describe('exporter fetcher', () => {
  const topic = uniqueName('test.exporter.fetcher');
  let admin: Admin;
  /** What a reader of committed records must see, per partition, in order. */
  const expected = new Map<number, { value: string | null; timestamp: number }[]>([
    [0, []],
    [1, []],
  ]);

  before(async () => {
    admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true });
    const plain = kafka.producer({ idempotent: true });
    await plain.connect();
    const t0 = Date.UTC(2001, 0, 1);
    const msg = (partition: number, value: string | null, i: number) => {
      expected.get(partition)!.push({ value, timestamp: t0 + i });
      return { partition, key: `k${i}`, value, timestamp: String(t0 + i), headers: { h: `v${i}` } };
    };
    let i = 0;
    await plain.send({
      topic,
      messages: [msg(0, 'plain-0', i++), msg(0, null, i++), msg(1, 'plain-1', i++)],
    });
    await plain.send({
      topic,
      compression: CompressionTypes.GZIP,
      messages: Array.from({ length: 50 }, (_, k) => msg(k % 2, `gzip-${k}-${'x'.repeat(k)}`, i++)),
    });
    await plain.disconnect();
    const tx = kafka.producer({
      transactionalId: uniqueName('fetcher-tx'),
      maxInFlightRequests: 1,
      idempotent: true,
    });
    await tx.connect();
    const committed = await tx.transaction();
    await committed.send({ topic, messages: [msg(0, 'tx-committed-0', i++), msg(1, 'tx-committed-1', i++)] });
    await committed.commit();
    const aborted = await tx.transaction();
    await aborted.send({
      topic,
      messages: [0, 1].map((p) => ({ partition: p, value: `tx-aborted-${p}`, timestamp: String(t0 + i++) })),
    });
    await aborted.abort();
    await tx.disconnect();
    const last = kafka.producer();
    await last.connect();
    await last.send({ topic, messages: [msg(0, 'after-abort-0', i++), msg(1, 'after-abort-1', i++)] });
    await last.disconnect();
  });

  after(async () => {
    await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
    await admin.disconnect();
  });

  /** Runs a fetcher over both partitions until it reached `until`; what it handed over. */
  async function fetchAll(
    until: Map<number, number>,
    opts: { seekAfterFirst?: [number, number] } = {},
  ): Promise<Map<number, { offset: number; value: string | null; timestamp: number }[]>> {
    const got = new Map<number, { offset: number; value: string | null; timestamp: number }[]>([
      [0, []],
      [1, []],
    ]);
    const reached = new Map<number, number>();
    let seeked = false;
    const deliver = async (r: FetchedRecords) => {
      for (let k = 0; k < r.count; k++) {
        const len = r.valueLens[k]!;
        got.get(r.partition)!.push({
          offset: r.offsets[k]!,
          value: len < 0 ? null : r.buf.toString('utf8', r.valueStarts[k]!, r.valueStarts[k]! + len),
          timestamp: r.timestamps[k]!,
        });
      }
      if (r.nextOffset !== undefined) reached.set(r.partition, r.nextOffset);
      if (opts.seekAfterFirst && !seeked && r.partition === opts.seekAfterFirst[0] && r.count > 0) {
        seeked = true;
        const [partition, offset] = opts.seekAfterFirst;
        got.set(
          partition,
          got.get(partition)!.filter((x) => x.offset < offset),
        );
        fetcher.seek(partition, offset);
      }
    };
    const fetcher = new PartitionFetcher({
      admin,
      topic,
      groupId: uniqueName('fetcher-group'), // nothing committed: from the log start
      clientId: 'fetcher-test',
      fromBeginning: true,
      logger: createLogger({ service: 'exporter', level: 'error' }),
      maxBytes: 1 << 20,
      // Small: several fetches per partition, and batches cut at the limit.
      maxBytesPerPartition: 200,
      maxWaitMs: 100,
      requestTimeoutMs: 10_000,
      maxBackoffMs: 500,
      deliver,
      onExpired: () => assert.fail('nothing expired'),
    });
    fetcher.assign([0, 1]);
    try {
      for (const t0 = Date.now(); ; await sleep(50)) {
        if ([...until].every(([p, end]) => (reached.get(p) ?? -1) >= end)) break;
        if (Date.now() - t0 > 30_000) assert.fail(`fetcher stuck at ${JSON.stringify([...reached])}`);
      }
    } finally {
      await fetcher.stop();
    }
    return got;
  }

  it('hands over exactly the committed records, plain and gzip, in order, and reads past the control records to the end', async () => {
    const ends = new Map((await topicEnd(topic)).map((e) => [e.partition, Number(e.offset)]));
    const got = await fetchAll(ends);
    for (const p of [0, 1]) {
      const records = got.get(p)!;
      assert.deepEqual(
        records.map(({ value, timestamp }) => ({ value, timestamp })),
        expected.get(p),
        `partition ${p}`,
      );
      const offsets = records.map((r) => r.offset);
      assert.deepEqual(
        offsets,
        [...offsets].sort((a, b) => a - b),
        'offset order',
      );
      assert.equal(new Set(offsets).size, offsets.length, 'each offset once');
    }
  });

  it('after a seek back, reads the partition again from there and drops what it had fetched beyond', async () => {
    const ends = new Map((await topicEnd(topic)).map((e) => [e.partition, Number(e.offset)]));
    const got = await fetchAll(ends, { seekAfterFirst: [0, 1] });
    const values = got.get(0)!.map((r) => r.value);
    assert.deepEqual(
      values,
      expected.get(0)!.map((r) => r.value),
    );
    const offsets = got.get(0)!.map((r) => r.offset);
    assert.equal(new Set(offsets).size, offsets.length, 'nothing handed over twice after the seek');
  });
});
