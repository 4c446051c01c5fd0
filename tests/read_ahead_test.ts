/**
 * ffi/read_ahead.ts: a /proc text read to its end by a syscall table on
 * another thread (the freeze's maps read, engine/dump/vm_flags.ts) gives
 * the bytes a plain read gives; too few slots say the end was not seen;
 * a failed read gives its errno.
 */

import assert from "node:assert/strict";
import { ReadAhead } from "../ffi/read_ahead.ts";
import { closeRawFd, openRawFd, tablesAvailable } from "../ffi/syscall_table.ts";
import { readMapsBytes } from "../engine/proc/maps.ts";
import { sleepSync } from "../engine/sleep_sync.ts";

const ignore = !tablesAvailable();

/** Reads `path` with `slots` table reads. */
function readAhead(path: string, slots: number) {
  const fd = openRawFd(path, false);
  try {
    const r = new ReadAhead(fd, slots);
    while (!r.done()) sleepSync(0.05);
    return r.collect();
  } finally {
    closeRawFd(fd);
  }
}

Deno.test({
  name: "read-ahead: the maps text as a plain read gives it; short of slots: not complete",
  ignore,
  fn() {
    // This process's own maps change now and then (the runtime maps and unmaps): compared when
    // two plain reads around the read-ahead agree, a few tries.
    for (let tries = 1;; tries++) {
      const want = readMapsBytes(Deno.pid);
      const slots = Math.ceil(want.length / 4096) + 4;
      const got = readAhead(`/proc/${Deno.pid}/maps`, slots);
      assert.equal(got.complete, true);
      assert.equal(got.errno, undefined);
      const after = readMapsBytes(Deno.pid);
      const steady = want.length === after.length && want.every((b, i) => b === after[i]);
      if (!steady && tries < 5) continue;
      assert.deepEqual(got.bytes, after);
      break;
    }
    const short = readAhead(`/proc/${Deno.pid}/maps`, 1);
    assert.equal(short.complete, false, "one slot: the end not seen");
    assert.equal(short.bytes.length <= 4096, true);
  },
});

Deno.test({
  name: "read-ahead: a failed read gives its errno",
  ignore,
  fn() {
    const r = new ReadAhead(-1, 2);
    while (!r.done()) sleepSync(0.05);
    const got = r.collect();
    assert.equal(got.errno, 9); // EBADF
    assert.equal(got.complete, false);
    assert.equal(got.bytes.length, 0);
  },
});
