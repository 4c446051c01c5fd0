/**
 * The smallest process image the validator and the restore's compile
 * accept around a list of mappings (pid 100, one thread of zero registers,
 * no fds, 64 default signal actions), for tests of the mapping passes.
 *
 * @module
 */

import { USER_REGS_FIELDS } from "../../ffi/regs.ts";
import type { ProcessImage } from "../../engine/model.ts";

/** A process image of pid 100 holding `mappings` (given as is: complete them first). */
export function minimalProcessImage(mappings: readonly object[]): ProcessImage {
  return {
    pid: 100,
    ppid: 1,
    pgid: 100,
    sid: 100,
    bootstrap: { start: "0x10000000", size: 0x400000 },
    mappings,
    threads: [{ tid: 100, regs: Object.fromEntries(USER_REGS_FIELDS.map((f) => [f, "0x0"])) }],
    fds: [],
    cwd: "/",
    root: "/",
    exe: { path: "/bin/true" },
    sigactions: Array.from({ length: 64 }, () => ({})),
    rlimits: [],
  } as unknown as ProcessImage;
}
