/**
 * The syscall instruction the restore unmaps the bootstrap through
 * (engine/restore/unmap_gadget.ts), looked up in a live process (a
 * `sleep` this test starts and kills): in the image's [vdso] when it is
 * there, readable and executable; anywhere else executable (the full
 * search) when the image's vdso is not where the image says, or lies in
 * the excluded range. Every restore test uses it for real.
 */

import assert from "node:assert/strict";
import { syscallOutside } from "../engine/restore/unmap_gadget.ts";
import { readMaps } from "../engine/proc/maps.ts";
import { processVmRead } from "../ffi/process_vm.ts";
import type { ProcessImage } from "../engine/model.ts";

function imageWithVdsoAt(start: bigint, end: bigint): ProcessImage {
  return {
    mappings: [{
      start: `0x${start.toString(16)}`,
      end: `0x${end.toString(16)}`,
      name: "[vdso]",
      kind: "vdso",
      perms: "r-xp",
    }],
  } as unknown as ProcessImage;
}

function isSyscallIn(
  pid: number,
  at: bigint,
  where: (m: { start: bigint; end: bigint; perms: string }) => boolean,
) {
  const m = readMaps(pid).find((m) => m.start <= at && at + 2n <= m.end);
  assert.ok(m, `0x${at.toString(16)} is mapped`);
  assert.equal(m.perms.slice(0, 3).replace("w", "-"), "r-x");
  assert.ok(where(m));
  const b = new Uint8Array(2);
  assert.equal(processVmRead(pid, at, b), 2);
  assert.deepEqual([...b], [0x0f, 0x05]);
}

Deno.test("unmap gadget: in the image's vdso, else the full search", () => {
  const child = new Deno.Command("sleep", { args: ["100"], stdout: "null", stderr: "null" })
    .spawn();
  try {
    const pid = child.pid;
    let vdso;
    for (let i = 0; i < 200 && !vdso; i++) vdso = readMaps(pid).find((m) => m.path === "[vdso]");
    assert.ok(vdso, "the child has a vdso");
    const none = { start: 0x10000n, end: 0x20000n };
    const inVdso = (m: { start: bigint }) => m.start === vdso!.start;

    const fast = syscallOutside(pid, imageWithVdsoAt(vdso.start, vdso.end), none);
    isSyscallIn(pid, fast, inVdso);

    // The image's vdso is elsewhere (nothing mapped there): the full search still finds one.
    const moved = syscallOutside(pid, imageWithVdsoAt(0x1000n, 0x3000n), none);
    isSyscallIn(pid, moved, () => true);

    // The vdso is in the excluded range: found outside it.
    const outside = syscallOutside(pid, imageWithVdsoAt(vdso.start, vdso.end), vdso);
    isSyscallIn(pid, outside, (m) => m.start !== vdso!.start);
  } finally {
    child.kill("SIGKILL");
  }
  return child.status.then(() => {});
});
