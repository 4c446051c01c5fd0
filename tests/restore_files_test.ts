/**
 * Round trip of file descriptors: tests/targets/rt_files.c opens regular
 * files at offsets, dup'd and independent fds of one file, O_APPEND and
 * O_CLOEXEC fds, a directory, /dev/null and /dev/zero, an O_RDWR file and
 * a high fd number; it is dumped, killed and restored with the same pid,
 * then checks every fd itself after the trigger file appears.
 */

import assert from "node:assert/strict";
import { dumpKillRestore, removeImageDir } from "./helpers/roundtrip.ts";
import { startTarget, type Target, withTargets } from "./helpers/targets.ts";

/** The checks rt_files.c reports. */
const FILE_CHECKS = [
  "fd-set",
  "offset-read",
  "offset-read-data",
  "flags-rdonly",
  "offset-write",
  "flags-wronly",
  "write-continues",
  "dup-offset",
  "dup-shared",
  "independent-open",
  "append-flag",
  "append-writes",
  "cloexec-set",
  "cloexec-clear",
  "dir-fstat",
  "dir-fchdir",
  "dir-openat",
  "dev-null",
  "dev-null-flags",
  "dev-zero",
  "rdwr-write",
  "high-fd",
];

/** Asserts that every expected check line says ok and the target printed PASS and exited 0. */
function assertChecksPassed(t: Target, names: string[], code: number | undefined): void {
  const out = t.output();
  const failed = out.split("\n").filter((l) => /^check \S+ FAIL/.test(l) || l === "FAIL");
  assert.deepEqual(failed, [], `target reported failures:\n${out}`);
  for (const name of names) {
    assert.match(out, new RegExp(`^check ${name} ok$`, "m"), `no "check ${name} ok" in:\n${out}`);
  }
  assert.match(out, /^PASS$/m, out);
  assert.equal(code, 0, out);
}

Deno.test(
  "file descriptors survive dump, kill and restore (offsets, dup, flags, dirs, devices)",
  withTargets(async () => {
    const work = await Deno.makeTempDir({ prefix: "cryo-rt-files-" });
    const trigger = `${work}/go`;
    let dir: string | undefined;
    try {
      const t = await startTarget("rt_files", [trigger, work]);
      const ready = await t.waitFor(/^ready pid=(\d+) fds=(.*)$/m);
      const pid = t.pid;
      assert.equal(Number(ready[1]), pid);

      const rt = await dumpKillRestore(t);
      dir = rt.dir;
      assert.equal(rt.tree.rootPid, pid, "restored with another pid");
      // The fds seen from outside are the same numbers as before the dump.
      const fds = [...Deno.readDirSync(`/proc/${pid}/fd`)].map((e) => Number(e.name))
        .sort((a, b) => a - b);
      assert.equal(fds.join(" ") + " ", ready[2]);

      await Deno.writeTextFile(trigger, "");
      const st = await t.wait();
      assertChecksPassed(t, FILE_CHECKS, st.kind === "exited" ? st.code : undefined);
    } finally {
      if (dir) await removeImageDir(dir);
      await Deno.remove(work, { recursive: true }).catch(() => {});
    }
  }),
);
