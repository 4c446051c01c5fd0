/**
 * Base64 helpers for binary fields of the JSON model (node:buffer based).
 *
 * @module
 */

import { Buffer } from "node:buffer";

/** Encodes bytes as standard base64. */
export function encodeBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}

/** Decodes standard base64 into bytes. */
export function decodeBase64(text: string): Uint8Array<ArrayBuffer> {
  const b = Buffer.from(text, "base64");
  const out = new Uint8Array(b.length);
  out.set(b);
  return out;
}
