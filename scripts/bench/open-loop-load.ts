/**
 * An open-loop load generator for one HTTP POST route: requests are sent at a constant rate,
 * spread evenly over each second, whatever the server's answer times, which is what "a
 * steady offered load of R requests/s" means.
 *
 * autocannon's `overallRate` is not that: each of C connections may send R ÷ C requests per
 * second, counted from timers that all start together, and sends the next only after the
 * answer. At 1,000 req/s over 500 connections every connection fires at the top of each
 * second: bursts of 500 at once, then 500 more as answers come back, and a connection whose
 * answer takes long loses its turn, so fewer than R are sent when the server is busy.
 *
 * Here `maxConnections` keep-alive connections are opened first; then a 1 ms timer sends, on
 * each tick, the requests due since the last one (so the rate holds even when ticks come
 * late). A request goes out on an idle connection, a new one if one was lost, or else waits
 * in a queue. Each answer's
 * latency counts from the moment the request was due, not sent, so time spent queued behind
 * a slow server is in the figures (no coordinated omission).
 *
 * HTTP/1.1 on raw sockets: requests are rendered once per id, answers are read by status
 * line and Content-Length only (the API always sends one), which keeps the generator's own
 * CPU small beside the system it measures on the same cores.
 */
import { connect, type Socket } from 'node:net';

export interface OpenLoopSpec {
  /** http://host:port, loopback only. */
  readonly url: string;
  readonly path: string;
  readonly rate: number;
  readonly seconds: number;
  readonly maxConnections: number;
  readonly headers: Readonly<Record<string, string>>;
  /** The request body for the i-th request (unique keys and subjects). */
  readonly body: (i: number) => string;
  /** Extra headers for the i-th request (an Idempotency-Key). */
  readonly headersFor: (i: number) => Readonly<Record<string, string>>;
  /** Answers still missing this long after the last send count as timeouts. */
  readonly drainMs?: number;
}

export interface OpenLoopResult {
  /** Requests due over the run (rate × seconds). */
  readonly due: number;
  readonly sent: number;
  readonly '2xx': number;
  readonly '4xx': number;
  readonly '5xx': number;
  /** Connection errors, malformed answers, and answers still missing at the end. */
  readonly errors: number;
  readonly timeouts: number;
  /** Most requests waiting for a connection at once. */
  readonly maxQueued: number;
  readonly connectionsOpened: number;
  /** Wall clock (epoch ms) when request 0 was due; request i was due at startedAtMs + i × 1000 ÷ rate. */
  readonly startedAtMs: number;
  /** Answer latency from the moment each request was due, ms. */
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

interface Conn {
  socket: Socket;
  /** The request in flight: its index and when it was due; undefined when idle. */
  busy?: { i: number; dueAt: number };
  buf: Buffer;
}

export async function runOpenLoop(spec: OpenLoopSpec): Promise<OpenLoopResult> {
  const target = new URL(spec.url);
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(target.hostname))
    throw new Error('the open-loop load generator sends to loopback only');
  const port = Number(target.port || 80);
  const due = Math.round(spec.rate * spec.seconds);
  const latencies: number[] = [];
  const counts = { sent: 0, '2xx': 0, '4xx': 0, '5xx': 0, errors: 0, timeouts: 0 };
  const idle: Conn[] = [];
  const open = new Set<Conn>();
  const queue: { i: number; dueAt: number }[] = [];
  let maxQueued = 0;
  let connectionsOpened = 0;
  let answered = 0;
  let onAllAnswered: (() => void) | undefined;

  const fixedHeaders = Object.entries({ ...spec.headers, host: target.host, connection: 'keep-alive' })
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  const render = (i: number): Buffer => {
    const body = Buffer.from(spec.body(i), 'utf8');
    const extra = Object.entries(spec.headersFor(i))
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('');
    return Buffer.concat([
      Buffer.from(
        `POST ${spec.path} HTTP/1.1\r\n${fixedHeaders}${extra}content-length: ${body.length}\r\n\r\n`,
        'latin1',
      ),
      body,
    ]);
  };

  const settle = (c: Conn, outcome: 'answer' | 'error', status = 0): void => {
    const job = c.busy;
    c.busy = undefined;
    if (!job) return;
    answered += 1;
    if (outcome === 'error') counts.errors += 1;
    else {
      latencies.push(performance.now() - job.dueAt);
      if (status >= 200 && status < 300) counts['2xx'] += 1;
      else if (status >= 400 && status < 500) counts['4xx'] += 1;
      else counts['5xx'] += 1;
    }
    if (answered === counts.sent && onAllAnswered) onAllAnswered();
  };

  const next = (c: Conn): void => {
    const job = queue.shift();
    if (job) send(c, job);
    else idle.push(c);
  };

  const onData = (c: Conn, chunk: Buffer): void => {
    c.buf = c.buf.length === 0 ? chunk : Buffer.concat([c.buf, chunk]);
    for (;;) {
      const end = c.buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = c.buf.subarray(0, end).toString('latin1');
      const status = Number(head.slice(9, 12));
      const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
      if (!length || !Number.isInteger(status)) {
        // Not an answer this generator can frame: give the connection up.
        settle(c, 'error');
        drop(c);
        return;
      }
      const total = end + 4 + Number(length[1]);
      if (c.buf.length < total) return;
      c.buf = c.buf.subarray(total);
      const closing = /\r\nconnection:\s*close/i.test(head);
      settle(c, 'answer', status);
      if (closing) {
        drop(c);
        return;
      }
      next(c);
    }
  };

  const drop = (c: Conn): void => {
    if (!open.delete(c)) return;
    c.socket.destroy();
    const at = idle.indexOf(c);
    if (at >= 0) idle.splice(at, 1);
    settle(c, 'error');
    // A queued request gets a fresh connection rather than waiting for the next tick.
    const job = queue.shift();
    if (job) dispatch(job);
  };

  const openConn = (): Conn => {
    const socket = connect({ host: target.hostname.replace(/^\[|\]$/g, ''), port, noDelay: true });
    const c: Conn = { socket, buf: Buffer.alloc(0) };
    connectionsOpened += 1;
    open.add(c);
    socket.on('data', (d: Buffer) => onData(c, d));
    socket.on('error', () => drop(c));
    socket.on('close', () => drop(c));
    return c;
  };

  const send = (c: Conn, job: { i: number; dueAt: number }): void => {
    c.busy = job;
    counts.sent += 1;
    c.socket.write(render(job.i));
  };

  const dispatch = (job: { i: number; dueAt: number }): void => {
    const c = idle.pop() ?? (open.size < spec.maxConnections ? openConn() : undefined);
    if (c) send(c, job);
    else {
      queue.push(job);
      maxQueued = Math.max(maxQueued, queue.length);
    }
  };

  // Every connection is open before the clock starts, as autocannon's are: opening hundreds
  // while the server is busy would measure connection set-up (and SYN retries), not requests.
  for (let k = 0; k < spec.maxConnections; k += 50) {
    const batch = Array.from({ length: Math.min(50, spec.maxConnections - k) }, openConn);
    await Promise.all(
      batch.map(
        (c) =>
          new Promise<void>((resolve) => {
            c.socket.once('connect', resolve);
            c.socket.once('close', resolve);
          }),
      ),
    );
    for (const c of batch) if (open.has(c)) idle.push(c);
  }

  const start = performance.now();
  const startedAtMs = Date.now();
  let scheduled = 0;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const elapsed = performance.now() - start;
      const upTo = Math.min(due, Math.floor((elapsed / 1000) * spec.rate));
      for (; scheduled < upTo; scheduled++)
        dispatch({ i: scheduled, dueAt: start + (scheduled / spec.rate) * 1000 });
      if (scheduled >= due) {
        clearInterval(timer);
        resolve();
      }
    }, 1);
  });

  // Every request is due by now; wait for the answers (and the queue) up to drainMs.
  await new Promise<void>((resolve) => {
    const waitFor = setTimeout(resolve, spec.drainMs ?? 60_000);
    onAllAnswered = () => {
      if (queue.length > 0) return;
      clearTimeout(waitFor);
      resolve();
    };
    if (queue.length === 0 && answered === counts.sent) onAllAnswered();
  });
  const missing = due - answered;
  counts.timeouts += missing;
  counts.errors += missing;
  for (const c of [...open]) {
    c.busy = undefined;
    open.delete(c);
    c.socket.destroy();
  }

  latencies.sort((a, b) => a - b);
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? 0;
  return {
    due,
    ...counts,
    maxQueued,
    connectionsOpened,
    startedAtMs,
    p50: pct(0.5),
    p99: pct(0.99),
    max: latencies.at(-1) ?? 0,
  };
}
