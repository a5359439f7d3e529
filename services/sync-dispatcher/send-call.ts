/**
 * The HTTP client of the dispatcher: node's own http/https (no dependency), one call with a
 * hard deadline, nothing it receives trusted.
 *
 * - Deadline: the target's timeoutMs covers connecting, sending, redirects and reading.
 * - Address check: the URL's host was vetted at registration, but a DNS name can resolve
 *   anywhere later; every lookup's answer is checked against the link-local / metadata list
 *   before connecting (isBlockedAddress), so DNS cannot aim the dispatcher at those.
 * - Redirects: only 307 and 308 to the same origin (scheme, host, port), at most
 *   MAX_REDIRECTS hops; they keep method, body and headers, so the partner gets the same
 *   call. A redirect to another host is refused, never followed (the host is what was
 *   vetted, and the call carries credentials and identifiers). 301/302/303 are refused too:
 *   clients turn them into GET, which would not delete anything.
 * - Response body: at most maxBodyBytes are read (evidence is cut to 1000 characters
 *   anyway); the rest is not waited for.
 * - Shutdown: `signal` aborts the call at once; the result says so (`aborted`).
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import { isBlockedAddress } from '../shared/validate-target.ts';
import type { CallResult } from './classify-outcome.ts';
import type { RenderedCall } from './render-call.ts';

export const MAX_REDIRECTS = 3;

export interface HttpAgents {
  readonly http: http.Agent;
  readonly https: https.Agent;
}

export interface SendOptions {
  readonly timeoutMs: number;
  /** Aborts the call (dispatcher shutdown). */
  readonly signal: AbortSignal;
  readonly agents: HttpAgents;
  /** Most response-body bytes read, default 16 KiB. */
  readonly maxBodyBytes?: number;
  /** Name resolution; default the guarded dns.lookup. Tests inject answers through createGuardedLookup. */
  readonly lookup?: LookupFunction;
}

/** Keep-alive agents: a target is called many times, and a new TLS handshake per call is waste. */
export function createAgents(): HttpAgents {
  return {
    http: new http.Agent({ keepAlive: true, maxFreeSockets: 256 }),
    https: new https.Agent({ keepAlive: true, maxFreeSockets: 256 }),
  };
}

class BlockedAddressError extends Error {
  constructor() {
    super('the host resolved to a blocked address');
  }
}

type Resolve = (
  hostname: string,
  options: object,
  callback: (err: NodeJS.ErrnoException | null, address: unknown, family?: number) => void,
) => void;

/**
 * A lookup for http.request: resolves as `resolve` does (dns.lookup by default), then refuses
 * when any answer is link-local or a metadata address, before a connection is attempted.
 */
export function createGuardedLookup(resolve: Resolve = dnsLookup as unknown as Resolve): LookupFunction {
  return ((hostname: string, options: object, callback: (...args: unknown[]) => void) => {
    resolve(hostname, options, (err, address, family) => {
      if (err) return callback(err);
      const list = Array.isArray(address) ? (address as LookupAddress[]) : [{ address: String(address) }];
      if (list.some((a) => isBlockedAddress(a.address))) return callback(new BlockedAddressError());
      callback(null, address, family);
    });
  }) as unknown as LookupFunction;
}

const guardedLookup = createGuardedLookup();

interface Received {
  kind: 'received';
  status: number;
  retryAfter: string | null;
  location: string | null;
  body: string;
}

export async function sendCall(call: RenderedCall, opts: SendOptions): Promise<CallResult> {
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(), opts.timeoutMs);
  try {
    let url = new URL(call.url);
    for (let hop = 0; ; hop++) {
      const r = await requestOnce(url, call, opts, deadline.signal);
      if (r.kind !== 'received') return r;
      const redirect = [301, 302, 303, 307, 308].includes(r.status) && r.location !== null;
      if (!redirect) return { kind: 'response', status: r.status, retryAfter: r.retryAfter, body: r.body };
      let next: URL;
      try {
        next = new URL(r.location!, url);
      } catch {
        return { kind: 'redirect_refused', status: r.status, reason: 'other_host' };
      }
      if (next.origin !== url.origin)
        return { kind: 'redirect_refused', status: r.status, reason: 'other_host' };
      if (r.status !== 307 && r.status !== 308)
        return { kind: 'redirect_refused', status: r.status, reason: 'method_change' };
      if (hop >= MAX_REDIRECTS) return { kind: 'redirect_refused', status: r.status, reason: 'too_many' };
      url = next;
    }
  } finally {
    clearTimeout(timer);
  }
}

function requestOnce(
  url: URL,
  call: RenderedCall,
  opts: SendOptions,
  deadline: AbortSignal,
): Promise<Received | CallResult> {
  const maxBody = opts.maxBodyBytes ?? 16 * 1024;
  return new Promise((resolve) => {
    let settled = false;
    let req: http.ClientRequest | undefined;
    const finish = (r: Received | CallResult) => {
      if (settled) return;
      settled = true;
      deadline.removeEventListener('abort', onTimeout);
      opts.signal.removeEventListener('abort', onShutdown);
      resolve(r);
    };
    const onTimeout = () => {
      finish({ kind: 'timeout', timeoutMs: opts.timeoutMs });
      req?.destroy();
    };
    const onShutdown = () => {
      finish({ kind: 'aborted' });
      req?.destroy();
    };
    if (opts.signal.aborted) return onShutdown();
    if (deadline.aborted) return onTimeout();
    deadline.addEventListener('abort', onTimeout);
    opts.signal.addEventListener('abort', onShutdown);

    const https_ = url.protocol === 'https:';
    const headers: Record<string, string | number> = {
      ...call.headers,
      'Content-Length': call.body?.length ?? 0,
    };
    try {
      req = (https_ ? https : http).request(url, {
        method: call.method,
        headers,
        agent: https_ ? opts.agents.https : opts.agents.http,
        lookup: opts.lookup ?? guardedLookup,
      });
    } catch (err) {
      // Synchronous refusals (an invalid header value) are the partner registration's fault.
      return finish({ kind: 'network', code: String((err as NodeJS.ErrnoException).code ?? 'UNKNOWN') });
    }
    req.on('error', (err: NodeJS.ErrnoException) => {
      finish(
        err instanceof BlockedAddressError
          ? { kind: 'blocked_address' }
          : { kind: 'network', code: String(err.code ?? 'UNKNOWN') },
      );
    });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      const done = () => {
        const header = (name: string) => {
          const v = res.headers[name];
          return typeof v === 'string' ? v : null;
        };
        finish({
          kind: 'received',
          status: res.statusCode ?? 0,
          retryAfter: header('retry-after'),
          location: header('location'),
          body: Buffer.concat(chunks).toString('utf8'),
        });
      };
      res.on('data', (chunk: Buffer) => {
        if (settled) return;
        chunks.push(chunk.subarray(0, maxBody - size));
        size += chunk.length;
        // Enough for evidence: answer now rather than wait for (or buffer) the rest.
        if (size >= maxBody) {
          done();
          res.destroy();
        }
      });
      res.on('end', done);
      // A connection cut mid-body ends in 'close' without 'end' (finish is a no-op after done).
      res.on('close', () => {
        if (!res.complete) finish({ kind: 'network', code: 'ECONNRESET' });
      });
      res.on('error', (err: NodeJS.ErrnoException) =>
        finish({ kind: 'network', code: String(err.code ?? 'ECONNRESET') }),
      );
    });
    req.end(call.body ?? undefined);
  });
}
