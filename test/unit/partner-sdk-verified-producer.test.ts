// The partner SDK's send guards, without Kafka: the partition check on a resolved send (the
// kafkajs 2.2.4 skipped-partition bug) and the producer replaced after any failed send (the
// rolled-back sequence numbers). Fakes stand in for the producer; real Kafka: test/integration.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Partitioners, type Producer, type ProducerRecord, type RecordMetadata } from 'kafkajs';
import {
  IncompleteSendError,
  SendFailedError,
  createVerifiedProducer,
} from '../../packages/partner-sdk/src/create-verified-producer.ts';
import { findUnacknowledgedPartitions } from '../../packages/partner-sdk/src/find-unacknowledged-partitions.ts';

const meta = (topicName: string, partition: number, errorCode = 0): RecordMetadata => ({
  topicName,
  partition,
  errorCode,
});

describe('partner sdk: findUnacknowledgedPartitions', () => {
  const expected = new Map([['acks', new Set([0, 3, 7])]]);

  it('is empty when every partition written to answered with errorCode 0', () => {
    assert.deepEqual(
      findUnacknowledgedPartitions(expected, [meta('acks', 7), meta('acks', 0), meta('acks', 3)]),
      [],
    );
    assert.deepEqual(findUnacknowledgedPartitions(new Map(), []), []);
  });

  it('names a partition missing from the answer (send resolved without writing it)', () => {
    assert.deepEqual(findUnacknowledgedPartitions(expected, [meta('acks', 0), meta('acks', 7)]), [
      { topic: 'acks', partition: 3, errorCode: null },
    ]);
  });

  it('names a partition answered with an error, with its code', () => {
    assert.deepEqual(
      findUnacknowledgedPartitions(expected, [meta('acks', 0), meta('acks', 3, 45), meta('acks', 7)]),
      [{ topic: 'acks', partition: 3, errorCode: 45 }],
    );
  });

  it('does not count the same partition number of another topic, nor one bad answer among good ones', () => {
    const answered = [meta('acks', 0), meta('dlq', 3), meta('acks', 7), meta('acks', 7, 6)];
    assert.deepEqual(findUnacknowledgedPartitions(expected, answered), [
      { topic: 'acks', partition: 3, errorCode: null },
      { topic: 'acks', partition: 7, errorCode: 6 },
    ]);
  });
});

/** A fake kafkajs producer whose send answers as `answer` says. */
function fakeProducer(answer: (r: ProducerRecord) => Promise<RecordMetadata[]>, connectFails = false) {
  const calls = { connected: 0, disconnected: 0, sent: [] as ProducerRecord[] };
  const producer = {
    connect: async () => {
      if (connectFails) throw new Error('no broker');
      calls.connected++;
    },
    disconnect: async () => void calls.disconnected++,
    send: async (r: ProducerRecord) => {
      calls.sent.push(r);
      return answer(r);
    },
  } as unknown as Producer;
  return { producer, calls };
}

/** Every partition the record names, answered cleanly. */
const complete = async (r: ProducerRecord) =>
  [...new Set(r.messages.map((m) => m.partition!))].map((p) => meta(r.topic, p));

function setup(
  answers: ((r: ProducerRecord) => Promise<RecordMetadata[]>)[],
  partitionCount = 12,
  failedConnects = 0,
) {
  const made: ReturnType<typeof fakeProducer>[] = [];
  let metadataFetches = 0;
  const warnings: string[] = [];
  const verified = createVerifiedProducer({
    create: () => {
      const fake = fakeProducer(answers[made.length] ?? complete, made.length < failedConnects);
      made.push(fake);
      return fake.producer;
    },
    admin: {
      fetchTopicMetadata: async (options) => {
        metadataFetches++;
        return {
          topics: (options?.topics ?? []).map((name) => ({
            name,
            partitions: Array.from({ length: partitionCount }, (_, partitionId) => ({
              partitionId,
              leader: 1,
              partitionErrorCode: 0,
              replicas: [1],
              isr: [1],
            })),
          })),
        };
      },
    },
    logger: { info() {}, warn: (m) => void warnings.push(m), error() {} },
    now: () => 0,
  });
  return { verified, made, warnings, fetches: () => metadataFetches };
}

const record = (...keys: string[]): ProducerRecord => ({
  topic: 'acks',
  acks: -1,
  messages: keys.map((key) => ({ key, value: Buffer.from(key) })),
});

describe('partner sdk: createVerifiedProducer', () => {
  it('assigns partitions with the default partitioner, so an ack stays keyed like its event', async () => {
    const { verified, made } = setup([]);
    await verified.send(record('subject-a', 'subject-b', 'subject-c'));
    const partitionMetadata = Array.from({ length: 12 }, (_, partitionId) => ({ partitionId, leader: 1 }));
    const kafkajs = Partitioners.DefaultPartitioner();
    assert.deepEqual(
      made[0]!.calls.sent[0]!.messages.map((m) => m.partition),
      ['subject-a', 'subject-b', 'subject-c'].map((key) =>
        kafkajs({
          topic: 'acks',
          partitionMetadata: partitionMetadata as never,
          message: { key, value: null },
        }),
      ),
    );
  });

  it('keeps the producer while sends succeed', async () => {
    const { verified, made, fetches } = setup([]);
    await verified.send(record('a'));
    await verified.send(record('b'));
    assert.equal(made.length, 1);
    assert.equal(made[0]!.calls.sent.length, 2);
    assert.equal(fetches(), 1, 'partition metadata is cached');
  });

  it('a send that resolves without every partition fails, and the next send gets a new producer', async () => {
    // Answers for no partition at all: what kafkajs returns when it skipped the only one.
    const { verified, made, warnings, fetches } = setup([async () => []]);
    await assert.rejects(verified.send(record('a')), (err: unknown) => {
      assert.ok(err instanceof IncompleteSendError);
      assert.equal(err.code, 'ERR_PARTNER_SEND_INCOMPLETE');
      assert.equal(err.missing.length, 1);
      assert.equal(err.missing[0]!.errorCode, null);
      assert.equal(err.retriable, true);
      return true;
    });
    assert.equal(made[0]!.calls.disconnected, 1, 'the old producer is discarded');
    await verified.send(record('a'));
    assert.equal(made.length, 2);
    assert.equal(made[1]!.calls.connected, 1);
    assert.equal(made[1]!.calls.sent.length, 1);
    assert.equal(fetches(), 2, 'metadata fetched again after the failure');
    assert.deepEqual(warnings, ['send incomplete, producer replaced']);
  });

  it('a send that rejects fails retriable, with its cause, and the next send gets a new producer', async () => {
    // Non-retriable, as kafkajs says of OUT_OF_ORDER_SEQUENCE_NUMBER.
    const lost = Object.assign(new Error('the answer was lost'), { retriable: false });
    const { verified, made } = setup([
      async () => {
        throw lost;
      },
    ]);
    await assert.rejects(verified.send(record('a')), (err: unknown) => {
      assert.ok(err instanceof SendFailedError);
      assert.equal(err.code, 'ERR_PARTNER_SEND_FAILED');
      assert.equal(err.cause, lost);
      assert.equal(err.retriable, true, 'a kafkajs consumer is never crashed for good by it');
      return true;
    });
    assert.equal(made[0]!.calls.disconnected, 1);
    await verified.send(record('b'));
    assert.equal(made.length, 2);
  });

  it('runs sends one at a time: a send waiting behind a failed one goes out on the new producer', async () => {
    let fail = () => {};
    const { verified, made } = setup([
      () =>
        new Promise((_, reject) => {
          fail = () => reject(new Error('blip'));
        }),
    ]);
    const first = verified.send(record('a'));
    const second = verified.send(record('b'));
    await new Promise((r) => setImmediate(r));
    assert.equal(made[0]!.calls.sent.length, 1, 'the second send waits for the first');
    fail();
    await assert.rejects(first);
    await second;
    assert.equal(made[0]!.calls.sent.length, 1);
    assert.equal(made[1]!.calls.sent.length, 1);
  });

  it('disconnects the current producer, then refuses to send', async () => {
    const { verified, made } = setup([
      async () => {
        throw new Error('blip');
      },
    ]);
    await verified.connect();
    await assert.rejects(verified.send(record('a')));
    await verified.send(record('b'));
    await verified.disconnect();
    assert.deepEqual(
      made.map((m) => m.calls.disconnected),
      [1, 1],
    );
    await assert.rejects(verified.send(record('c')), /disconnected/);
    assert.equal(made.length, 2, 'no producer created after disconnect');
  });

  it('a producer that fails to connect is disconnected, and the next send tries a new one', async () => {
    const { verified, made } = setup([], 12, 1);
    await assert.rejects(verified.connect(), /no broker/);
    assert.equal(made[0]!.calls.disconnected, 1);
    await verified.send(record('a'));
    assert.equal(made.length, 2);
    assert.equal(made[1]!.calls.sent.length, 1);
  });
});
