/**
 * Where a thread's XSAVE area lives. An image since this change keeps it
 * once, as bytes, in the thread's standard `NT_X86_XSTATE` core note (the
 * note gdb and readelf read), and its thread record in the JSON has no
 * `xsave`; an older image also has it as base64 in the record
 * (`ThreadState.xsave`), which then wins. In memory the bytes are the
 * record's `xstate`, a property that is not enumerable, so that no JSON
 * of the record (the image's note, `cryo show --json`) carries them.
 *
 * The 64 XSAVE areas of a 64-thread process were 224 KB of its 327 KB
 * note as base64: parsed, checked against the base64 pattern and decoded
 * twice on every restore, encoded and decoded again on every dump
 * (docs/PERFORMANCE.md, branch threadsrestore2).
 *
 * @module
 */

import { decodeBase64 } from "../base64.ts";
import type { ThreadState } from "../model.ts";

/**
 * sizeof(user_i387_struct): an area shorter than this has no
 * `NT_X86_XSTATE` note (engine/image/notes.ts `FPREGS_SIZE`); it stays
 * base64 in the record.
 */
const NOTE_MIN_SIZE = 512;

/**
 * The XSAVE area of thread `t`, as bytes (empty when the thread has none:
 * `xsave` empty, or an image's record without a note). A record with
 * neither `xsave` nor `xstate` lost its bytes on the way (a spread copy
 * does not take a property that is not enumerable): an internal error,
 * never an empty area written to an image.
 */
export function threadXsave(t: ThreadState): Uint8Array {
  if (t.xsave !== undefined) return decodeBase64(t.xsave);
  if (t.xstate === undefined) {
    throw new Error(`internal error: the record of thread ${t.tid} has no XSAVE area`);
  }
  return t.xstate;
}

/**
 * Records `bytes` as the XSAVE area of thread `t`: as the record's
 * non-enumerable `xstate` (written to the thread's `NT_X86_XSTATE` note
 * only), or as base64 in `xsave` when it is too short to have a note.
 * Either way {@link threadXsave} gives the same bytes back.
 */
export function setThreadXsave(t: ThreadState, bytes: Uint8Array): void {
  if (bytes.length < NOTE_MIN_SIZE) {
    t.xsave = bytes.toBase64();
    return;
  }
  delete t.xsave;
  Object.defineProperty(t, "xstate", {
    value: bytes,
    enumerable: false,
    writable: true,
    configurable: true,
  });
}
