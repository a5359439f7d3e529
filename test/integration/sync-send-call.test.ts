// The dispatcher's HTTP client against real servers on loopback: the address check on DNS
// answers (with answers injected through the guarded lookup, since tests cannot change DNS),
// body capping, resets, and aborting a call in flight.
import assert from 'node:assert/strict';
import type http from 'node:http';
import { after, before, describe, it } from 'node:test';
import {
  createAgents,
  createGuardedLookup,
  sendCall,
  type HttpAgents,
} from '../../services/sync-dispatcher/send-call.ts';
import type { RenderedCall } from '../../services/sync-dispatcher/render-call.ts';
import { reply, startPartner, type Partner } from '../helpers/sync-partner.ts';

const answering = (address: string, family: number) =>
  createGuardedLookup((_host, options, cb) => {
    if ((options as { all?: boolean }).all) cb(null, [{ address, family }]);
    else cb(null, address, family);
  });

describe('sync dispatcher HTTP client', () => {
  let p: Partner;
  let agents: HttpAgents;
  const held: http.ServerResponse[] = [];
  before(async () => {
    p = await startPartner((call, res) => {
      if (call.url === '/hang') return void held.push(res);
      if (call.url === '/big') {
        res.writeHead(200);
        res.end('y'.repeat(100_000));
        return;
      }
      if (call.url === '/reset') {
        res.socket?.destroy();
        return;
      }
      reply(200, 'ok')(call, res);
    });
    agents = createAgents();
  });
  after(async () => {
    for (const r of held) r.destroy();
    agents.http.destroy();
    await p.close();
  });
  const port = () => new URL(p.url).port;
  const call = (url: string): RenderedCall => ({
    method: 'DELETE',
    url,
    headers: {},
    body: null,
    idempotencyKey: 'k',
  });
  const send = (url: string, extra: Partial<Parameters<typeof sendCall>[1]> = {}) =>
    sendCall(call(url), { timeoutMs: 2000, signal: new AbortController().signal, agents, ...extra });

  it('connects when the name resolves to an allowed address', async () => {
    const r = await send(`http://partner.test:${port()}/x`, { lookup: answering('127.0.0.1', 4) });
    assert.deepEqual(r, { kind: 'response', status: 200, retryAfter: null, body: 'ok' });
  });

  it('refuses to connect when the name resolves to a metadata or link-local address', async () => {
    const before = p.calls.length;
    // Fresh agents: a kept-alive socket was checked when it connected and is reused without a lookup.
    const fresh = createAgents();
    for (const [address, family] of [
      ['169.254.169.254', 4],
      ['fd00:ec2::254', 6],
    ] as const) {
      const r = await send(`http://partner.test:${port()}/x`, {
        lookup: answering(address, family),
        agents: fresh,
      });
      assert.deepEqual(r, { kind: 'blocked_address' });
    }
    fresh.http.destroy();
    assert.equal(p.calls.length, before);
  });

  it('reads at most the body cap, reports resets and timeouts, and aborts on shutdown', async () => {
    const big = await send(`${p.url}/big`);
    assert.equal(big.kind === 'response' && big.body.length, 16 * 1024);
    assert.deepEqual(await send(`${p.url}/reset`), { kind: 'network', code: 'ECONNRESET' });
    assert.deepEqual(await send(`${p.url}/hang`, { timeoutMs: 200 }), { kind: 'timeout', timeoutMs: 200 });
    const shutdown = new AbortController();
    const pending = send(`${p.url}/hang`, { signal: shutdown.signal });
    setTimeout(() => shutdown.abort(), 100);
    assert.deepEqual(await pending, { kind: 'aborted' });
  });
});
