/**
 * Pseudo-terminals inside the tree (tests/targets/rt_pty.c): the master
 * comes back with the same /dev/pts index even when a lower index has
 * become free, with its termios, window size and packet mode; the session
 * leader gets its controlling terminal back and the foreground group is
 * the same; a read blocked on the slave goes on. A terminal outside the
 * tree needs the `shell-job` opt-in.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { UnsupportedError } from "../engine/errors.ts";
import { restore } from "../engine/restore/mod.ts";
import { cstr, rawSyscall, syscallNum } from "../ffi/libc.ts";
import { SYS } from "../ffi/sysno.ts";
import { pathExists } from "./helpers/fs.ts";
import { dumpKillRestore, tempImageDir } from "./helpers/roundtrip.ts";
import { SIGUSR1 } from "./helpers/signals.ts";
import { adoptPid, startTarget, withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+) index=(\d+) child=(\d+) grandchild=(\d+)$/m;
const O_RDWR_NOCTTY_CLOEXEC = 2 | 0o400 | 0o2000000;

/** Opens a pty master in this process (taking the lowest free index). */
function holdPty(): number {
  return syscallNum(SYS.open, cstr("/dev/ptmx"), O_RDWR_NOCTTY_CLOEXEC, 0);
}

Deno.test(
  "pty: a pty pair of the tree comes back with its index, settings, session and foreground group",
  withTargets(async () => {
    // Hold a lower index, free it before the restore: the kernel would hand it out first.
    const lower = holdPty();
    const t = await startTarget("rt_pty");
    const m = await t.waitFor(READY);
    rawSyscall(SYS.close, lower);
    const { tree } = await dumpKillRestore(t);
    assert.equal(tree.pids.length, 4, "parent, child, and two grandchildren");
    for (const pid of [t.pid, Number(m[3]), Number(m[4])]) assert.ok(tree.pids.includes(pid));
    t.signal(SIGUSR1);
    const st = await t.wait();
    const out = t.output();
    assert.equal(st.kind, "exited", out);
    assert.match(out, /^check pty-index ok$/m, out);
    assert.match(out, /^check child ok$/m, out);
    assert.match(out, /^PASS$/m, out);
  }),
);

Deno.test(
  "pty: a terminal outside the tree needs shell-job; with it, it is the restorer's",
  withTargets(async () => {
    // The target's stdin is a pty whose master this test holds (outside the tree).
    const master = holdPty();
    try {
      const index = new Int32Array(1);
      rawSyscall(SYS.ioctl, master, 0x80045430, /* TIOCGPTN */ index);
      rawSyscall(SYS.ioctl, master, 0x40045431, /* TIOCSPTLCK */ new Int32Array([0]));
      const t = await startTarget("/bin/sleep", ["30"], { stdin: `/dev/pts/${index[0]}` });
      const dir = await tempImageDir();
      await assert.rejects(
        () => checkpoint(t.pid, { dir }),
        (e: unknown) => e instanceof UnsupportedError && /fd 0 .*needs --shell-job/.test(e.message),
      );
      assert.equal(pathExists(dir), false);
      assert.equal(t.poll(), undefined, "still running");
      const dump = await checkpoint(t.pid, { dir, optIns: ["shell-job"] });
      assert.deepEqual(dump.manifest.optIns, ["shell-job"]);
      await t.wait();
      await assert.rejects(() => restore(dir), /needs --shell-job/);
      const tree = await restore(dir, { optIns: ["shell-job"] });
      t.resetAfterRestore();
      for (const pid of tree.pids) if (pid !== t.pid) adoptPid(pid);
      assert.equal(tree.rootPid, t.pid);
      // fd 0 is the restorer's stdin now, not the pty.
      assert.notEqual(Deno.readLinkSync(`/proc/${t.pid}/fd/0`), `/dev/pts/${index[0]}`);
    } finally {
      rawSyscall(SYS.close, master);
    }
  }),
);
