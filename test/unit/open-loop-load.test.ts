import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { runOpenLoop } from '../../scripts/bench/open-loop-load.ts';

async function serve(handler: Parameters<typeof createServer>[1]): Promise<{ server: Server; url: string }> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

test('open-loop load: every due request is sent once, with its own key and body, and answers are classified', async () => {
  const seen = new Map<string, string>();
  const { server, url } = await serve((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      const key = String(req.headers['idempotency-key']);
      seen.set(key, body);
      const n = Number(key.split('-')[1]);
      // Every tenth answer is a 409 and every fifteenth a 503; some are slow.
      const status = n % 10 === 0 ? 409 : n % 15 === 0 ? 503 : 202;
      // With its length: the generator frames answers by Content-Length, as the API sends them.
      const answer = `{"n":${n}}`;
      const headers = { 'content-type': 'application/json', 'content-length': String(answer.length) };
      setTimeout(() => res.writeHead(status, headers).end(answer), n % 7);
    });
  });
  try {
    const r = await runOpenLoop({
      url,
      path: '/v1/erasure-requests',
      rate: 400,
      seconds: 0.5,
      maxConnections: 8,
      headers: { 'content-type': 'application/json' },
      headersFor: (i) => ({ 'idempotency-key': `k-${i}` }),
      body: (i) => JSON.stringify({ i }),
    });
    assert.equal(r.due, 200);
    assert.equal(r.sent, 200);
    assert.equal(seen.size, 200);
    for (let i = 0; i < 200; i++) assert.equal(seen.get(`k-${i}`), JSON.stringify({ i }));
    const conflicts = [...Array(200).keys()].filter((i) => i % 10 === 0).length;
    const unavailable = [...Array(200).keys()].filter((i) => i % 10 !== 0 && i % 15 === 0).length;
    assert.equal(r['4xx'], conflicts);
    assert.equal(r['5xx'], unavailable);
    assert.equal(r['2xx'], 200 - conflicts - unavailable);
    assert.equal(r.errors, 0);
    assert.ok(r.connectionsOpened <= 8);
  } finally {
    server.close();
  }
});

test('open-loop load: a server that never answers is counted as timeouts, not waited on forever', async () => {
  const { server, url } = await serve(() => undefined);
  try {
    const r = await runOpenLoop({
      url,
      path: '/',
      rate: 100,
      seconds: 0.1,
      maxConnections: 2,
      headers: {},
      headersFor: () => ({}),
      body: () => '{}',
      drainMs: 200,
    });
    assert.equal(r.due, 10);
    // Two connections, each holding one unanswered request; the other eight never left the queue.
    assert.equal(r.sent, 2);
    assert.equal(r.timeouts, 10);
    assert.equal(r['2xx'], 0);
  } finally {
    server.closeAllConnections();
    server.close();
  }
});

test('open-loop load: refuses a non-loopback target', async () => {
  await assert.rejects(
    runOpenLoop({
      url: 'http://192.0.2.1:80',
      path: '/',
      rate: 1,
      seconds: 1,
      maxConnections: 1,
      headers: {},
      headersFor: () => ({}),
      body: () => '',
    }),
    /loopback only/,
  );
});
