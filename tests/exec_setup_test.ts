/**
 * The exec stop's clean-up program (engine/restore/exec_setup.ts): every
 * mapping the kernel set up for the exec is unmapped but the bootstrap,
 * [vsyscall] and the vvar/vdso, which move to their dumped addresses
 * through the scratch area; a vdso of another size is refused. Every
 * restore test runs it for real.
 */

import assert from "node:assert/strict";
import { decodeProgram, OP_END } from "../engine/program/builder.ts";
import { SYS } from "../ffi/sysno.ts";
import { execSetupProgram } from "../engine/restore/exec_setup.ts";
import type { Mapping } from "../engine/model.ts";

const base = 0x10000000n;
const size = 0x400000n;
const scratch = base + size - 0x100000n;
const fresh = [
  { start: 0x400000n, end: 0x401000n, name: "" },
  { start: base, end: base + 0x10000n, name: "" }, // the bootstrap
  { start: 0x7ffc0000n, end: 0x7ffe0000n, name: "[stack]" },
  { start: 0x7fff0000n, end: 0x7fff4000n, name: "[vvar]" },
  { start: 0x7fff4000n, end: 0x7fff6000n, name: "[vdso]" },
  { start: 0xffffffffff600000n, end: 0xffffffffff601000n, name: "[vsyscall]" },
];
const wanted = [
  { start: "0x7ffe0000", end: "0x7ffe4000", name: "[vvar]", kind: "vdso" },
  { start: "0x7ffe4000", end: "0x7ffe6000", name: "[vdso]", kind: "vdso" },
] as unknown as Mapping[];

Deno.test("exec set-up: unmap the exec's mappings, move vvar/vdso through the scratch area", () => {
  const built = execSetupProgram(fresh, wanted, base, size, scratch);
  assert.ok(built.base >= scratch && built.end <= scratch + 0x100000n);
  const ops = decodeProgram(built.bytes, built.base);
  assert.deepEqual(
    ops.map((o) => [o.nr, ...o.args.slice(0, 5)]),
    [
      [SYS.munmap, 0x400000n, 0x1000n, 0n, 0n, 0n],
      [SYS.munmap, 0x7ffc0000n, 0x20000n, 0n, 0n, 0n],
      [SYS.mremap, 0x7fff0000n, 0x4000n, 0x4000n, 3n, scratch],
      [SYS.mremap, 0x7fff4000n, 0x2000n, 0x2000n, 3n, scratch + 0x4000n],
      [SYS.mremap, scratch, 0x4000n, 0x4000n, 3n, 0x7ffe0000n],
      [SYS.mremap, scratch + 0x4000n, 0x2000n, 0x2000n, 3n, 0x7ffe4000n],
      [OP_END, 0n, 0n, 0n, 0n, 0n],
    ],
  );
});

Deno.test("exec set-up: a vdso of another size is refused", () => {
  const other = fresh.map((m) => m.name === "[vdso]" ? { ...m, end: m.end + 0x1000n } : m);
  assert.throws(
    () => execSetupProgram(other, wanted, base, size, scratch),
    /\[vdso\] of this kernel differs from the dump/,
  );
});
