/**
 * Worker side of {@link ThreadedPageWriter} (page_writer.ts): writes the
 * filled slots of a shared buffer to the image file, in submission order,
 * while the main thread reads the next slot from the target.
 *
 * @module
 */

import { CTRL, SLOT_EMPTY, SLOT_FULL } from "./page_writer_layout.ts";
import { cstr, rawSyscall } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";

const O_WRONLY = 1;
const O_CLOEXEC = 0o2000000;

// deno-lint-ignore no-explicit-any
const scope = self as any;

scope.onmessage = (
  e: MessageEvent<
    {
      data: SharedArrayBuffer;
      ctrl: SharedArrayBuffer;
      meta: SharedArrayBuffer;
      slots: number;
      path: string;
    }
  >,
) => {
  const { data, ctrl, meta, slots, path } = e.data;
  const state = new Int32Array(ctrl);
  const info = new Float64Array(meta);
  const slotSize = data.byteLength / slots;
  let fd = -1;
  try {
    fd = Number(rawSyscall(SYS.open, cstr(path), O_WRONLY | O_CLOEXEC, 0));
    if (fd < 0) throw new Error(`open ${path}: errno ${-fd}`);
    for (let i = 0;; i = (i + 1) % slots) {
      while (Atomics.load(state, i) !== SLOT_FULL) Atomics.wait(state, i, SLOT_EMPTY);
      const length = info[i * 2];
      const offset = info[i * 2 + 1];
      if (length < 0) break; // end of stream
      const view = new Uint8Array(data, i * slotSize, length);
      for (let done = 0; done < length;) {
        const n = Number(
          rawSyscall(SYS.pwrite64, fd, view.subarray(done), length - done, offset + done),
        );
        if (n <= 0) throw new Error(`write ${path}: errno ${-n}`);
        done += n;
      }
      Atomics.store(state, i, SLOT_EMPTY);
      Atomics.notify(state, i);
    }
    Atomics.store(state, CTRL.done, 1);
  } catch (err) {
    scope.postMessage({ error: (err as Error).message });
    Atomics.store(state, CTRL.failed, 1);
    for (let i = 0; i < slots; i++) {
      Atomics.store(state, i, SLOT_EMPTY);
      Atomics.notify(state, i);
    }
  } finally {
    if (fd >= 0) rawSyscall(SYS.close, fd);
    Atomics.notify(state, CTRL.done);
    scope.postMessage({ closed: true });
  }
};
