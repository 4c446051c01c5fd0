/**
 * The wire of a live migration (`cryo migrate` → `cryo receive`): a mutual
 * challenge-response over a shared secret, then frames that each carry an
 * HMAC-SHA256 under a session key, so nothing unauthenticated is ever
 * acted on.
 *
 * Handshake: the receiver sends a magic and a fresh 32-byte nonce nR; the
 * sender answers with its own fresh nonce nS and
 * HMAC(key, "cryo-migrate sender" | nR | nS); the receiver checks it
 * (constant time) and answers HMAC(key, "cryo-migrate receiver" | nR | nS),
 * which the sender checks. Session key: HMAC(key, "cryo-migrate session" |
 * nR | nS). Frame: u32 length of (type + payload), u8 type, payload, then
 * HMAC(session, u64 sequence | type | payload); each direction counts its
 * own sequence, so a frame replayed, reordered or dropped fails the check.
 *
 * @module
 */

import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { CryoError } from "../errors.ts";

/** Frame types. */
export const FRAME = {
  /** Sender: a file of the current round begins (JSON {path, size}). */
  file: 1,
  /** Sender: the next bytes of the current file. */
  data: 2,
  /** Sender: the round is complete (JSON {round, final}). */
  roundEnd: 3,
  /** Receiver: the round is written and synced (JSON {round}). */
  ack: 4,
  /** Sender: the source tree is killed; the receiver may restore. */
  switched: 5,
  /** Either side: a one-line reason, then the connection closes. */
  error: 6,
} as const;

/** One authenticated frame. */
export interface Frame {
  type: number;
  payload: Uint8Array;
}

const MAGIC = new TextEncoder().encode("CRYOMIG1");
const NONCE = 32;
const MAC = 32;
/** Largest frame accepted (type + payload). */
const MAX_FRAME = 8 << 20;

/** Reads a shared secret from `path`: at least 16 bytes, not readable by group or others. */
export async function readKeyFile(path: string): Promise<Uint8Array> {
  let st: Deno.FileInfo;
  try {
    st = await Deno.stat(path);
  } catch {
    throw new CryoError(`cannot read the key file ${path}`);
  }
  if (st.mode !== null && (st.mode & 0o077) !== 0) {
    throw new CryoError(`the key file ${path} is readable by others (chmod 600 it)`);
  }
  const key = await Deno.readFile(path);
  if (key.length < 16) throw new CryoError(`the key file ${path} holds less than 16 bytes`);
  return key;
}

function hmac(key: Uint8Array, ...parts: Uint8Array[]): Uint8Array {
  const h = createHmac("sha256", key);
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
}

const label = (s: string) => new TextEncoder().encode(s);

/** An authenticated, framed connection (after {@link acceptSender} or {@link connectReceiver}). */
export class Channel {
  readonly #conn: Deno.Conn;
  readonly #key: Uint8Array;
  #sendSeq = 0n;
  #recvSeq = 0n;
  #buf: Uint8Array = new Uint8Array(0);

  /** Wraps `conn` with session key `key` (used by the handshakes). */
  constructor(conn: Deno.Conn, key: Uint8Array, buffered: Uint8Array = new Uint8Array(0)) {
    this.#conn = conn;
    this.#key = key;
    this.#buf = buffered;
  }

  #mac(seq: bigint, type: number, payload: Uint8Array): Uint8Array {
    const head = new Uint8Array(9);
    new DataView(head.buffer).setBigUint64(0, seq);
    head[8] = type;
    return hmac(this.#key, head, payload);
  }

  /** Sends one frame. */
  async send(type: number, payload: Uint8Array = new Uint8Array(0)): Promise<void> {
    const out = new Uint8Array(5 + payload.length + MAC);
    new DataView(out.buffer).setUint32(0, 1 + payload.length);
    out[4] = type;
    out.set(payload, 5);
    out.set(this.#mac(this.#sendSeq++, type, payload), 5 + payload.length);
    await writeAll(this.#conn, out);
  }

  /** Sends a JSON frame. */
  sendJson(type: number, value: unknown): Promise<void> {
    return this.send(type, new TextEncoder().encode(JSON.stringify(value)));
  }

  /** Receives one frame, refusing one whose MAC is wrong (the connection is then useless). */
  async recv(): Promise<Frame> {
    const len = new DataView((await this.#read(4)).buffer).getUint32(0);
    if (len < 1 || len > MAX_FRAME) throw new CryoError(`migration: bad frame length ${len}`);
    const body = await this.#read(len + MAC);
    const type = body[0], payload = body.slice(1, len);
    const want = this.#mac(this.#recvSeq++, type, payload);
    if (!timingSafeEqual(want, body.subarray(len))) {
      throw new CryoError("migration: a frame failed authentication");
    }
    if (type === FRAME.error) {
      throw new CryoError(`the peer failed: ${new TextDecoder().decode(payload)}`);
    }
    return { type, payload };
  }

  /** Receives a frame of type `type` and parses its JSON payload. */
  async recvJson<T>(type: number): Promise<T> {
    const f = await this.recv();
    if (f.type !== type) throw new CryoError(`migration: frame ${f.type} where ${type} was due`);
    return JSON.parse(new TextDecoder().decode(f.payload)) as T;
  }

  async #read(n: number): Promise<Uint8Array> {
    this.#buf = await fill(this.#conn, this.#buf, n);
    const out = this.#buf.slice(0, n);
    this.#buf = this.#buf.slice(n);
    return out;
  }

  /** Closes the connection (idempotent). */
  close(): void {
    try {
      this.#conn.close();
    } catch { /* closed already */ }
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}

/** Reads from `conn` until `buf` holds at least `n` bytes. */
async function fill(conn: Deno.Conn, buf: Uint8Array, n: number): Promise<Uint8Array> {
  while (buf.length < n) {
    const chunk = new Uint8Array(Math.max(65536, n - buf.length));
    const got = await conn.read(chunk);
    if (got === null) throw new CryoError("migration: the peer closed the connection");
    const next = new Uint8Array(buf.length + got);
    next.set(buf);
    next.set(chunk.subarray(0, got), buf.length);
    buf = next;
  }
  return buf;
}

/**
 * Receiver side of the handshake on a fresh connection: throws (having
 * sent nothing but its nonce) when the sender does not prove the key.
 */
export async function acceptSender(conn: Deno.Conn, key: Uint8Array): Promise<Channel> {
  const nR = new Uint8Array(randomBytes(NONCE));
  const hello = new Uint8Array(MAGIC.length + NONCE);
  hello.set(MAGIC);
  hello.set(nR, MAGIC.length);
  await writeAll(conn, hello);
  let buf = await fill(conn, new Uint8Array(0), NONCE + MAC);
  const nS = buf.slice(0, NONCE), proof = buf.slice(NONCE, NONCE + MAC);
  buf = buf.slice(NONCE + MAC);
  if (!timingSafeEqual(proof, hmac(key, label("cryo-migrate sender"), nR, nS))) {
    throw new CryoError("a sender failed authentication (wrong key): nothing was written");
  }
  await writeAll(conn, hmac(key, label("cryo-migrate receiver"), nR, nS));
  return new Channel(conn, hmac(key, label("cryo-migrate session"), nR, nS), buf);
}

/** Sender side of the handshake: throws when the receiver does not prove the key. */
export async function connectReceiver(conn: Deno.Conn, key: Uint8Array): Promise<Channel> {
  let buf = await fill(conn, new Uint8Array(0), MAGIC.length + NONCE).catch(() => {
    throw new CryoError("the receiver closed the connection before the handshake");
  });
  if (!timingSafeEqual(buf.slice(0, MAGIC.length), MAGIC)) {
    throw new CryoError("the peer is not a cryo receiver");
  }
  const nR = buf.slice(MAGIC.length, MAGIC.length + NONCE);
  buf = buf.slice(MAGIC.length + NONCE);
  const nS = new Uint8Array(randomBytes(NONCE));
  const out = new Uint8Array(NONCE + MAC);
  out.set(nS);
  out.set(hmac(key, label("cryo-migrate sender"), nR, nS), NONCE);
  await writeAll(conn, out);
  buf = await fill(conn, buf, MAC).catch(() => {
    throw new CryoError("the receiver refused the key (wrong --key-file?)");
  });
  if (!timingSafeEqual(buf.slice(0, MAC), hmac(key, label("cryo-migrate receiver"), nR, nS))) {
    throw new CryoError("the receiver failed authentication (wrong key)");
  }
  return new Channel(conn, hmac(key, label("cryo-migrate session"), nR, nS), buf.slice(MAC));
}
