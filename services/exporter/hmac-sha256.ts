/**
 * HMAC-SHA256 of short messages, written straight into a caller's buffer: the exporter's
 * `identifier_hmac` column (dataset-schema.ts's identifierHmac, same bytes).
 *
 * identifierHmac() picks the implementation: the native one (native/hmac_column.c, one call
 * per row group, OpenSSL's SHA-256 inside node, about 0.13 µs a row) when it was built and
 * loads, else the JS one below (1.3-2.6 µs a row). The bytes are the same.
 *
 * Why not node:crypto: createHmac per value costs ~4 µs (a native object, a Buffer per
 * digest, and the garbage they leave): 15 % of the exporter's CPU in the profile. Here the
 * key's inner and outer pad states are computed once, so a message of ≤ 55 bytes costs two
 * SHA-256 compressions and allocates nothing. Longer messages are handled too (more blocks).
 * Checked against node:crypto in test/unit/exporter-hmac.test.ts.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
  0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
  0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
  0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
  0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
  0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
  0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
  0xc67178f2,
]);
const IV = new Int32Array([
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
]);

/** One SHA-256 compression of the 64 bytes at `buf[off..]` into `h`; `w` is scratch (64 words). */
function compress(h: Int32Array, w: Int32Array, buf: Uint8Array, off: number): void {
  for (let i = 0; i < 16; i++) {
    const j = off + 4 * i;
    w[i] = (buf[j]! << 24) | (buf[j + 1]! << 16) | (buf[j + 2]! << 8) | buf[j + 3]!;
  }
  for (let i = 16; i < 64; i++) {
    const a = w[i - 15]!;
    const b = w[i - 2]!;
    const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
    const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10);
    w[i] = (w[i - 16]! + s0 + w[i - 7]! + s1) | 0;
  }
  let a = h[0]!;
  let b = h[1]!;
  let c = h[2]!;
  let d = h[3]!;
  let e = h[4]!;
  let f = h[5]!;
  let g = h[6]!;
  let hh = h[7]!;
  for (let i = 0; i < 64; i++) {
    const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const ch = (e & f) ^ (~e & g);
    const t1 = (hh + S1 + ch + K[i]! + w[i]!) | 0;
    const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const maj = (a & b) ^ (a & c) ^ (b & c);
    const t2 = (S0 + maj) | 0;
    hh = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
  }
  h[0] = (h[0]! + a) | 0;
  h[1] = (h[1]! + b) | 0;
  h[2] = (h[2]! + c) | 0;
  h[3] = (h[3]! + d) | 0;
  h[4] = (h[4]! + e) | 0;
  h[5] = (h[5]! + f) | 0;
  h[6] = (h[6]! + g) | 0;
  h[7] = (h[7]! + hh) | 0;
}

export class HmacSha256 {
  private readonly inner = new Int32Array(8);
  private readonly outer = new Int32Array(8);
  private readonly h = new Int32Array(8);
  private readonly w = new Int32Array(64);
  private block = new Uint8Array(128);

  constructor(key: Uint8Array) {
    const k = new Uint8Array(64);
    if (key.length > 64) {
      const hk = HmacSha256.sha256(key);
      k.set(hk);
    } else k.set(key);
    const pad = new Uint8Array(64);
    for (const [state, x] of [
      [this.inner, 0x36],
      [this.outer, 0x5c],
    ] as const) {
      for (let i = 0; i < 64; i++) pad[i] = k[i]! ^ x;
      state.set(IV);
      compress(state, this.w, pad, 0);
    }
  }

  /** Plain SHA-256 (for keys longer than a block). */
  static sha256(msg: Uint8Array): Uint8Array {
    const h = new Int32Array(IV);
    const w = new Int32Array(64);
    const out = new Uint8Array(32);
    finish(h, w, msg, 0, msg.length, 0, padded(msg.length, 0));
    writeState(h, out, 0);
    return out;
  }

  /**
   * HMAC of `msg[from..to)`, 32 bytes written at `out[outOff..]`. The message is the
   * UTF-8 bytes the caller already holds (e.g. `type NUL value`).
   */
  digestInto(msg: Uint8Array, from: number, to: number, out: Uint8Array, outOff: number): void {
    const len = to - from;
    if (this.block.length < len + 72) this.block = new Uint8Array(2 * (len + 72));
    this.h.set(this.inner);
    finish(this.h, this.w, msg, from, len, 64, this.block);
    // Outer hash: outer state, then the 32-byte inner digest (one padded block).
    const b = this.block;
    writeState(this.h, b, 0);
    b[32] = 0x80;
    b.fill(0, 33, 62);
    b[62] = 0x03; // (64 + 32) * 8 = 768 bits = 0x0300
    b[63] = 0x00;
    this.h.set(this.outer);
    compress(this.h, this.w, b, 0);
    writeState(this.h, out, outOff);
  }
}

function padded(len: number, prefix: number): Uint8Array {
  return new Uint8Array(Math.ceil((len + 9 + prefix) / 64) * 64 + 64);
}

/** Hashes msg[from, from+len) into h, which already absorbed `prefix` bytes (0 or 64). */
function finish(
  h: Int32Array,
  w: Int32Array,
  msg: Uint8Array,
  from: number,
  len: number,
  prefix: number,
  scratch: Uint8Array,
): void {
  let off = from;
  let rest = len;
  while (rest >= 64) {
    compress(h, w, msg, off);
    off += 64;
    rest -= 64;
  }
  const blocks = rest + 9 > 64 ? 128 : 64;
  for (let i = 0; i < rest; i++) scratch[i] = msg[off + i]!;
  scratch[rest] = 0x80;
  scratch.fill(0, rest + 1, blocks - 4);
  const bits = (len + prefix) * 8; // messages here are far below 2^32 bits
  scratch[blocks - 4] = bits >>> 24;
  scratch[blocks - 3] = (bits >>> 16) & 0xff;
  scratch[blocks - 2] = (bits >>> 8) & 0xff;
  scratch[blocks - 1] = bits & 0xff;
  compress(h, w, scratch, 0);
  if (blocks === 128) compress(h, w, scratch, 64);
}

function writeState(h: Int32Array, out: Uint8Array, off: number): void {
  for (let i = 0; i < 8; i++) {
    const v = h[i]!;
    out[off + 4 * i] = v >>> 24;
    out[off + 4 * i + 1] = (v >>> 16) & 0xff;
    out[off + 4 * i + 2] = (v >>> 8) & 0xff;
    out[off + 4 * i + 3] = v & 0xff;
  }
}

/** The identifier_hmac column of a row group, from its identifier_type and identifier_value. */
export interface IdentifierHmac {
  readonly impl: 'native' | 'js';
  /**
   * HMAC-SHA256(key, type NUL value) of every row, 32 bytes each. `typeIdx[row]` indexes
   * `typeNames`; `values` is PLAIN BYTE_ARRAY (per row a little-endian uint32 length, then
   * the UTF-8 bytes), exactly `rows` values long.
   */
  column(typeNames: readonly string[], typeIdx: Int32Array, values: Uint8Array, rows: number): Uint8Array;
}

export function jsIdentifierHmac(key: Uint8Array): IdentifierHmac {
  const hmac = new HmacSha256(key);
  return {
    impl: 'js',
    column(typeNames, typeIdx, v, rows) {
      const typeBytes = typeNames.map((t) => Buffer.from(t, 'utf8'));
      const out = new Uint8Array(32 * rows);
      let scratch = Buffer.allocUnsafe(4096);
      let pos = 0;
      for (let row = 0; row < rows; row++) {
        const len = v[pos]! | (v[pos + 1]! << 8) | (v[pos + 2]! << 16) | (v[pos + 3]! << 24);
        pos += 4;
        const t = typeBytes[typeIdx[row]!]!;
        const n = t.length + 1 + len;
        if (n > scratch.length) scratch = Buffer.allocUnsafe(2 * n);
        t.copy(scratch, 0);
        scratch[t.length] = 0;
        scratch.set(v.subarray(pos, pos + len), t.length + 1);
        hmac.digestInto(scratch, 0, n, out, 32 * row);
        pos += len;
      }
      return out;
    },
  };
}

interface NativeHmacModule {
  prepareKey(key: Uint8Array): Uint8Array;
  hmacColumn(
    key: Uint8Array,
    types: Uint8Array,
    typeEnds: Int32Array,
    typeIdx: Int32Array,
    values: Uint8Array,
    valuesLen: number,
    rows: number,
    out: Uint8Array,
  ): void;
}

/** Where scripts/ensure-deps.mjs builds native/hmac_column.c. */
const NATIVE_HMAC_PATH = fileURLToPath(new URL('../../build/native/hmac_column.node', import.meta.url));

let native: { mod: NativeHmacModule } | { reason: string } | undefined;

/** The native module, or why it is not there (not built, no compiler, a failed load). */
export function loadNativeHmac(): { mod: NativeHmacModule } | { reason: string } {
  if (!native) {
    try {
      native = { mod: createRequire(import.meta.url)(NATIVE_HMAC_PATH) as NativeHmacModule };
    } catch (err) {
      const message = err instanceof Error ? err.message.split('\n')[0]! : String(err);
      native = { reason: message };
    }
  }
  return native;
}

export function nativeIdentifierHmac(mod: NativeHmacModule, key: Uint8Array): IdentifierHmac {
  const state = mod.prepareKey(key);
  return {
    impl: 'native',
    column(typeNames, typeIdx, values, rows) {
      const names = typeNames.map((t) => Buffer.from(t, 'utf8'));
      const ends = new Int32Array(names.length);
      names.reduce((end, b, i) => (ends[i] = end + b.length), 0);
      const out = new Uint8Array(32 * rows);
      mod.hmacColumn(state, Buffer.concat(names), ends, typeIdx, values, values.length, rows, out);
      return out;
    },
  };
}

/** The native HMAC when it loads, else the JS one. */
export function identifierHmac(key: Uint8Array): IdentifierHmac {
  const n = loadNativeHmac();
  return 'mod' in n ? nativeIdentifierHmac(n.mod, key) : jsIdentifierHmac(key);
}
