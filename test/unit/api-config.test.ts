import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadApiConfig } from '../../services/api/config.ts';
import { ConfigurationError } from '../../services/shared/errors.ts';

describe('API config: API_WORKERS', () => {
  it('defaults to one process', () => {
    assert.equal(loadApiConfig({}).workers, 1);
    assert.equal(loadApiConfig({ API_WORKERS: '4' }).workers, 4);
  });
  for (const bad of ['0', '65', '1.5', 'two', '-1'])
    it(`refuses API_WORKERS=${bad} with a message naming it`, () => {
      assert.throws(
        () => loadApiConfig({ API_WORKERS: bad }),
        (err: unknown) => err instanceof ConfigurationError && /API_WORKERS/.test(err.message),
      );
    });
});
