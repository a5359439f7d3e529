// The logger is the one redaction point: identifier values never reach a log line, whatever
// shape the caller logs them in.
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { createLogger } from '../../services/shared/logger.ts';

const CANARY = 'canary.person@example.org';

function capture(log: (logger: ReturnType<typeof createLogger>) => void): string {
  const stream = new PassThrough();
  let out = '';
  stream.on('data', (d: Buffer) => (out += d.toString('utf8')));
  const logger = createLogger({ service: 'test', level: 'debug', stream });
  log(logger);
  return out;
}

describe('logger redaction', () => {
  const foreign = `invalid input syntax for type uuid: "${CANARY}"`;
  const cases: [string, (l: ReturnType<typeof createLogger>) => void][] = [
    ['an Error under error', (l) => l.error('x', { code: 'ERR_X', error: new Error(foreign) })],
    ['an error-like object under error', (l) => l.error('x', { error: { message: foreign, code: '22P02' } })],
    ['an error message string under error', (l) => l.error('x', { code: 'ERR_X', error: foreign })],
    ['a message string under reason', (l) => l.warn('x', { reason: foreign })],
    ['a partner detail string', (l) => l.info('x', { detail: `no row for '${CANARY}'` })],
    ['a value key', (l) => l.info('x', { value: CANARY, nested: { email: CANARY } })],
  ];
  for (const [what, log] of cases)
    it(`keeps the value out of ${what}`, () => {
      const out = capture(log);
      assert.ok(out.length > 0, 'a line was written');
      assert.ok(!out.includes(CANARY), out);
    });

  it('leaves ordinary strings alone', () => {
    const out = capture((l) =>
      l.warn('x', { reason: 'gdpr_art17', error: 'connect ECONNREFUSED 127.0.0.1:5432' }),
    );
    assert.match(out, /gdpr_art17/);
    assert.match(out, /ECONNREFUSED 127\.0\.0\.1:5432/);
  });
});
