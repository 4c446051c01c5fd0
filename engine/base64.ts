/**
 * Base64 helpers for binary fields of the JSON model, on the Web API
 * (`Uint8Array.prototype.toBase64`, `Uint8Array.fromBase64`): no node:
 * module on the path of every dump and restore. Decoding is as lenient as
 * node:buffer's was (what a damaged image holds must never throw here: the
 * schemas refuse what is not base64).
 *
 * @module
 */

/** Encodes bytes as standard base64. */
export function encodeBase64(bytes: Uint8Array): string {
  return bytes.toBase64();
}

/**
 * Decodes standard base64 into bytes. Text that is not canonical base64 is
 * decoded as node:buffer does: URL-safe letters are accepted, other
 * characters are skipped, the first `=` ends the data and a last lone
 * character is dropped.
 */
export function decodeBase64(text: string): Uint8Array<ArrayBuffer> {
  try {
    return Uint8Array.fromBase64(text);
  } catch {
    let clean = text.replace(/-/g, "+").replace(/_/g, "/");
    const pad = clean.indexOf("=");
    if (pad >= 0) clean = clean.slice(0, pad);
    clean = clean.replace(/[^A-Za-z0-9+/]/g, "");
    if (clean.length % 4 === 1) clean = clean.slice(0, -1);
    return Uint8Array.fromBase64(clean, { lastChunkHandling: "loose" });
  }
}
