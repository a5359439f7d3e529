// DeleteObjects answers 200 with per-key Errors when some keys could not be deleted: the
// store must fail the call rather than report the files gone. The S3 client is faked here
// (only its answer is under test); the integration tests run the store against S3Proxy.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { S3Client } from '@aws-sdk/client-s3';
import { createDatasetStore, DatasetStoreError } from '../../services/shared/dataset/dataset-store.ts';

function storeAnswering(answers: object[]) {
  const sent: unknown[] = [];
  const client = {
    send: async (command: { input: unknown }) => {
      sent.push(command.input);
      return answers.shift() ?? {};
    },
  } as unknown as S3Client;
  return { store: createDatasetStore(client, 'bucket'), sent };
}

describe('dataset store delete', () => {
  it('succeeds when DeleteObjects lists no errors, 1,000 keys per call', async () => {
    const { store, sent } = storeAnswering([{}, { Errors: [] }]);
    await store.delete(Array.from({ length: 1500 }, (_, i) => `k${i}`));
    assert.equal(sent.length, 2);
  });

  it('fails, retriable, when DeleteObjects answers 200 with per-key errors', async () => {
    const { store } = storeAnswering([
      { Errors: [{ Key: 'erasure_events/dt=2026-01-01/_SUCCESS', Code: 'AccessDenied' }] },
    ]);
    await assert.rejects(
      store.delete(['erasure_events/dt=2026-01-01/_SUCCESS', 'other']),
      (err: unknown) =>
        err instanceof DatasetStoreError && err.retriable && /1 of 2 keys \(AccessDenied\)/.test(err.message),
    );
  });
});
