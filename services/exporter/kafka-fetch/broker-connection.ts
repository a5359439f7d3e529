/**
 * One TCP connection to one Kafka broker for the exporter's fetches: a request at a time,
 * each response read into one buffer of its exact size (no chunk list, no concatenation).
 * Plain TCP, as every Kafka client setting of this project (KAFKA_BROKERS is host:port).
 */
import { connect, type Socket } from 'node:net';
import { frameRequest } from './fetch-wire.ts';

/** Logged under ERR_EXPORTER_FETCH; the fetcher reconnects and reads the metadata again. */
export class BrokerConnectionError extends Error {}

export class BrokerConnection {
  private socket: Socket | undefined;
  private correlationId = 0;
  /** The response being read: its buffer once the size is known, and how much is filled. */
  private response: Buffer | undefined;
  private filled = 0;
  private sizeBytes = Buffer.alloc(4);
  private sizeFilled = 0;
  private waiting:
    | { resolve: (b: Buffer) => void; reject: (e: Error) => void; timer: NodeJS.Timeout; id: number }
    | undefined;
  private closed = false;

  private constructor(
    readonly host: string,
    readonly port: number,
    private readonly clientId: string,
  ) {}

  static open(host: string, port: number, clientId: string, timeoutMs: number): Promise<BrokerConnection> {
    const c = new BrokerConnection(host, port, clientId);
    return new Promise((resolve, reject) => {
      const socket = connect({ host, port, noDelay: true });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(
          new BrokerConnectionError(`connecting to broker ${host}:${port} timed out after ${timeoutMs} ms`),
        );
      }, timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        c.socket = socket;
        socket.on('data', (chunk: Buffer) => c.onData(chunk));
        socket.on('close', () =>
          c.fail(new BrokerConnectionError(`broker ${host}:${port} closed the connection`)),
        );
        resolve(c);
      });
      socket.on('error', (err) => {
        clearTimeout(timer);
        if (!c.socket) reject(new BrokerConnectionError(`broker ${host}:${port}: ${err.message}`));
        else c.fail(new BrokerConnectionError(`broker ${host}:${port}: ${err.message}`));
      });
    });
  }

  /**
   * Sends a request and resolves with its response (the bytes after the correlation id
   * start at offset 4). One at a time: the fetcher awaits each before the next.
   */
  request(apiKey: number, apiVersion: number, body: Buffer, timeoutMs: number): Promise<Buffer> {
    if (this.closed || !this.socket) return Promise.reject(new BrokerConnectionError('connection closed'));
    if (this.waiting) return Promise.reject(new Error('a request is already in flight on this connection'));
    const id = (this.correlationId = (this.correlationId + 1) & 0x7fffffff);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () =>
          this.fail(
            new BrokerConnectionError(`broker ${this.host}:${this.port} sent no response in ${timeoutMs} ms`),
          ),
        timeoutMs,
      );
      this.waiting = { resolve, reject, timer, id };
      this.socket!.write(frameRequest(apiKey, apiVersion, id, this.clientId, body));
    });
  }

  private onData(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      if (!this.response) {
        const take = Math.min(4 - this.sizeFilled, chunk.length - at);
        chunk.copy(this.sizeBytes, this.sizeFilled, at, at + take);
        this.sizeFilled += take;
        at += take;
        if (this.sizeFilled < 4) return;
        const size = this.sizeBytes.readInt32BE(0);
        if (size < 4) return this.fail(new BrokerConnectionError('a response without a correlation id'));
        this.response = Buffer.allocUnsafe(size);
        this.filled = 0;
        this.sizeFilled = 0;
        continue;
      }
      const take = Math.min(this.response.length - this.filled, chunk.length - at);
      chunk.copy(this.response, this.filled, at, at + take);
      this.filled += take;
      at += take;
      if (this.filled === this.response.length) {
        const done = this.response;
        this.response = undefined;
        const w = this.waiting;
        if (!w || done.readInt32BE(0) !== w.id)
          return this.fail(new BrokerConnectionError('a response to no request in flight'));
        this.waiting = undefined;
        clearTimeout(w.timer);
        w.resolve(done);
      }
    }
  }

  private fail(err: Error): void {
    const w = this.waiting;
    this.waiting = undefined;
    if (w) {
      clearTimeout(w.timer);
      w.reject(err);
    }
    this.close();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket?.destroy();
    const w = this.waiting;
    this.waiting = undefined;
    if (w) {
      clearTimeout(w.timer);
      w.reject(new BrokerConnectionError('connection closed'));
    }
  }
}
