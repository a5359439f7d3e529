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

describe('API config: ERASURE_ADMIN_TOKEN', () => {
  it('accepts a token the bearer parser accepts', () => {
    assert.equal(
      loadApiConfig({ ERASURE_ADMIN_TOKEN: 'adm_0123456789abcdef-._~+/=' }).adminToken,
      'adm_0123456789abcdef-._~+/=',
    );
  });
  for (const [what, bad] of [
    ['shorter than 16', 'short-token'],
    ['with characters a bearer token cannot carry', 'review!admin#token:0123456789'],
    ['longer than 200', 'a'.repeat(201)],
  ])
    it(`refuses one ${what}, naming it`, () => {
      assert.throws(
        () => loadApiConfig({ ERASURE_ADMIN_TOKEN: bad }),
        (err: unknown) => err instanceof ConfigurationError && /ERASURE_ADMIN_TOKEN/.test(err.message),
      );
    });
});

describe('API config: HTTP timeouts', () => {
  it('bounds slow clients by default: 20 s for headers, 60 s for a whole request', () => {
    const cfg = loadApiConfig({});
    assert.equal(cfg.headersTimeoutMs, 20_000);
    assert.equal(cfg.requestTimeoutMs, 60_000);
  });
  it('refuses a headers timeout longer than the request timeout', () => {
    assert.throws(
      () => loadApiConfig({ HTTP_HEADERS_TIMEOUT_MS: '30000', HTTP_REQUEST_TIMEOUT_MS: '20000' }),
      (err: unknown) => err instanceof ConfigurationError && /HTTP_HEADERS_TIMEOUT_MS/.test(err.message),
    );
  });
});
