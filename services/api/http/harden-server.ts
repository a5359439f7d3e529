import { STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { PROBLEM_CODES, type ProblemCode } from '../../shared/errors.ts';
import type { Logger } from '../../shared/logger.ts';
import { problemDocument } from './problem-handler.ts';

export interface ServerBounds {
  /** Time for a request's headers to arrive, ms (HTTP_HEADERS_TIMEOUT_MS, default 20000). */
  headersTimeoutMs: number;
  /** Time for a whole request, headers and body, to arrive, ms (HTTP_REQUEST_TIMEOUT_MS, default 60000). */
  requestTimeoutMs: number;
}

/**
 * How often node looks for requests over their bounds, ms. Its default (30 s) would let a
 * 20 s bound run to 50 s; the check walks only the requests being received, so 1 s is cheap.
 */
const CHECK_INTERVAL_MS = 1000;

/** How long an idle keep-alive connection stays open, ms. */
const KEEP_ALIVE_TIMEOUT_MS = 65_000;

/**
 * What the HTTP server does before Express sees a request: bounds on slow clients, how long
 * an idle keep-alive connection stays open, and a
 * problem+json answer with a stable code where node's parser would answer an empty 400, 408
 * or 431, or node an empty 417. Call it right after listen() (before 'listening': node
 * reads the check interval then).
 */
export function hardenServer(server: Server, bounds: ServerBounds, logger: Logger): void {
  // A client that never finishes its headers or body holds a socket and its buffers; node's
  // defaults (60 s, 300 s) let a few hundred such clients hold the API for minutes.
  server.headersTimeout = bounds.headersTimeoutMs;
  server.requestTimeout = bounds.requestTimeoutMs;
  (server as Server & { connectionsCheckingInterval: number }).connectionsCheckingInterval =
    CHECK_INTERVAL_MS;
  // An idle keep-alive connection outlives a load balancer's usual 60 s idle timeout (node's
  // default is 5 s), so the server never closes one the balancer is about to reuse.
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
  const timeoutDetail =
    `the request did not arrive in time (headers within ${bounds.headersTimeoutMs / 1000} s, ` +
    `the whole request within ${bounds.requestTimeoutMs / 1000} s)`;

  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (err.code === 'ECONNRESET') {
      socket.destroy(); // the client is gone; nothing to answer
      return;
    }
    const code: ProblemCode =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? 'ERR_HEADERS_TOO_LARGE'
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? 'ERR_REQUEST_TIMEOUT'
          : 'ERR_MALFORMED_HTTP';
    // Never err.rawPacket: it can hold the request's identifiers.
    logger.log(code === 'ERR_REQUEST_TIMEOUT' ? 'info' : 'debug', 'http request refused before routing', {
      code,
      parserCode: err.code,
    });
    // An answer already under way on this connection (pipelining, or a handler that answered
    // before the body was in) must not get a second one spliced into it.
    const inFlight = (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage;
    if (socket.writable && !inFlight?.headersSent) {
      const detail =
        code === 'ERR_HEADERS_TOO_LARGE'
          ? 'the request headers are larger than the server accepts'
          : code === 'ERR_REQUEST_TIMEOUT'
            ? timeoutDetail
            : `the request is not valid HTTP/1.1 (${String(err.code).slice(0, 60)})`;
      socket.write(rawProblem(code, detail));
    }
    socket.destroy();
  });

  // An Expect other than 100-continue (RFC 9110 §10.1.1): node would answer an empty 417.
  server.on('checkExpectation', (_req: IncomingMessage, res: ServerResponse) => {
    const body = problemBody('ERR_EXPECTATION_FAILED', 'the only expectation supported is 100-continue');
    res.writeHead(417, problemHeaders(body)).end(body);
  });
}

function problemBody(code: ProblemCode, detail: string): string {
  return JSON.stringify(problemDocument(code, detail));
}

function problemHeaders(body: string): Record<string, string> {
  return {
    'Content-Type': 'application/problem+json; charset=utf-8',
    'Content-Length': String(Buffer.byteLength(body)),
    'X-Content-Type-Options': 'nosniff',
  };
}

/** A whole HTTP/1.1 response, for a socket node's parser has given up on (so it closes). */
function rawProblem(code: ProblemCode, detail: string): string {
  const body = problemBody(code, detail);
  const status = PROBLEM_CODES[code].status;
  const headers = Object.entries({ ...problemHeaders(body), Connection: 'close' })
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  return `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n${headers}\r\n${body}`;
}
