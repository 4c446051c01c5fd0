/**
 * A third probe of file and fd state (tests/targets/rt_fileprobe.c, one
 * mode per case): POSIX record locks with a waiter, OFD and flock locks
 * across fork, hugetlb memfds, open flags (O_DIRECT, O_TRUNC, O_EXCL,
 * O_APPEND, O_NOFOLLOW, O_TMPFILE|O_EXCL), files changed since their open,
 * directory fds and a moved cwd, POSIX shm, /proc/self/mem and /sys
 * positions, a sparse fd table, pipe sizes, sparse and fallocated deleted
 * files, an inotify watch on a moved directory. Each mode is dumped
 * (killed), restored, and checks itself; what cannot come back exactly is
 * refused by name and the target runs on.
 */

import assert from "node:assert/strict";
import { assertChecksPassed } from "./helpers/checks.ts";
import { checkpoint } from "../engine/dump/mod.ts";
import {
  assertDumpRefused,
  assertRefusedLeavesRunning,
  dumpKillRestore,
  startTriggered,
  tempImageDir,
} from "./helpers/roundtrip.ts";
import { adoptPid, withTargets } from "./helpers/targets.ts";
import { restore } from "../engine/restore/mod.ts";
import { RestoreError } from "../engine/errors.ts";

const READY = /^ready pid=(\d+)$/m;

/** Modes that come back exactly, with the checks each must pass. */
const ROUND_TRIPS: Record<string, string[]> = {
  "lock-wait": [
    "lock-wait-held",
    "lock-wait-parent",
    "lock-wait-child-gets",
    "lock-wait-child-holds",
  ],
  "lock-ranges": ["lock-ranges-rd", "lock-ranges-wr", "lock-ranges-split", "lock-ranges-readonly"],
  "ofd-fork": [
    "ofd-fork-held",
    "flock-sh-two",
    "ofd-fork-child",
    "ofd-fork-still",
    "flock-sh-one",
    "flock-sh-none",
  ],
  "open-flags": [
    "o-direct",
    "o-direct-read",
    "o-trunc-kept",
    "o-excl",
    "o-append-pos",
    "o-append-write",
    "o-nofollow",
    "beyond-eof",
  ],
  "tmpfile-excl": ["tmpfile-linkable", "tmpfile-content"],
  "file-moved": ["mode-000", "moved-dir", "hard-link"],
  "dir-fds": ["dirfd-openat", "dirfd-create", "cwd-moved"],
  shm: ["shm-content", "shm-same-object"],
  "proc-mem": ["proc-mem", "proc-pagemap", "sys-pos"],
  "far-fd": ["far-fd", "far-fd-gaps"],
  "sparse-fds": ["fd-far", "fd-gaps", "fd-rlimit"],
  "root-moved": ["root-moved", "root-outside-fd"],
  "odd-names": ["name-deleted-suffix", "name-newline", "cwd-newline"],
  "ofd-wait": ["waiters-blocked", "ofd-waiter-gets", "flock-waiter-gets"],
  "ghost-dir-gone": ["ghost-dir-gone", "ghost-dir-gone-link", "ghost-dir-gone-dir"],
  "opath-deleted": ["opath-deleted"],
  // Its directory made again for the restore and removed before the tree runs (branch zdtm1).
  "cwd-deleted": ["cwd-deleted"],
  "fifo-size": ["fifo-pipe-sz", "pipe-sz"],
  "ghost-sparse": [
    "ghost-empty",
    "ghost-sparse-size",
    "ghost-sparse-data",
    "ghost-sparse-blocks",
    "ghost-falloc",
    "ghost-falloc-blocks",
  ],
  "inotify-moved": ["inotify-moved"],
  // (Refused before: re-created with MFD_HUGETLB now, tests/restore_hugetlb_test.ts.)
  "memfd-huge": ["memfd-huge"],
};

for (const [mode, checks] of Object.entries(ROUND_TRIPS)) {
  Deno.test(
    `file state comes back: ${mode}`,
    withTargets(async () => {
      const rt = await startTriggered("rt_fileprobe", READY, { passWork: true, extra: [mode] });
      const { dir } = await dumpKillRestore(rt.t);
      if (mode === "ghost-sparse") {
        // Holes and unwritten extents take no room in the image: 4 KiB + 4 bytes of data.
        let ghostBytes = 0;
        for (const e of Deno.readDirSync(dir)) {
          if (e.name.startsWith("ghost-")) ghostBytes += Deno.statSync(`${dir}/${e.name}`).size;
        }
        assert.ok(ghostBytes <= 2 * 4096 + 4096, `ghost data of ${ghostBytes} bytes in the image`);
      }
      await Deno.writeTextFile(rt.trigger, "");
      assertChecksPassed(rt.t, checks, await rt.t.wait(), { what: mode });
    }),
  );
}

/** Modes the dump refuses: the line it must print, and the checks of the target running on. */
const REFUSED: Record<string, { line: RegExp; checks: string[] }> = {
  "memfd-falloc": {
    line:
      /process \d+ fd 3 \(\/memfd:falloc \(deleted\)\): 2093056 bytes allocated beyond its 4096 bytes of data pages: a deleted file or memfd on tmpfs holding pages fallocate reserved/,
    checks: ["memfd-falloc-blocks"],
  },
};

for (const [mode, { line, checks }] of Object.entries(REFUSED)) {
  Deno.test(
    `file state refused by name: ${mode}`,
    withTargets(() =>
      assertRefusedLeavesRunning("rt_fileprobe", READY, mode, (e) => {
        assert.match(e.message, line);
        // Named once: not refused again by the fd plan as a deleted file of no known kind.
        const fd3 = e.items.filter((l) => / fd 3 \(/.test(l));
        assert.equal(fd3.length, 1, fd3.join("\n"));
      }, checks)
    ),
  );
}

Deno.test(
  "a file whose directory got a mount over it since the open",
  withTargets(async () => {
    const rt = await startTriggered("rt_fileprobe", READY, { passWork: true, extra: ["shadowed"] });
    try {
      await dumpKillRestore(rt.t);
      await Deno.writeTextFile(rt.trigger, "");
      assertChecksPassed(rt.t, ["shadowed"], await rt.t.wait(), { what: "shadowed" });
    } finally {
      // The target unmounts it at its end; a target that failed first leaves it to us.
      await new Deno.Command("umount", { args: ["-l", `${rt.work}/dir`], stderr: "null" }).output();
    }
  }),
);

Deno.test(
  "a lock taken by another process between the dump and the restore: the restore refuses it",
  withTargets(async () => {
    const rt = await startTriggered("rt_fileprobe", READY, {
      passWork: true,
      extra: ["lock-ranges"],
    });
    const dir = await tempImageDir();
    await checkpoint(rt.t.pid, { dir });
    await rt.t.wait();
    // Another process takes the write-locked range [20, 30) once the dumped process is gone.
    const holder = new Deno.Command("python3", {
      args: [
        "-c",
        "import fcntl,os,sys,time\nf=open(sys.argv[1],'r+')\nfcntl.lockf(f,fcntl.LOCK_EX|fcntl.LOCK_NB,10,20)\nprint('held',flush=True)\ntime.sleep(60)",
        `${rt.work}/ranges`,
      ],
      stdout: "piped",
    }).spawn();
    try {
      const reader = holder.stdout.getReader();
      const { value } = await reader.read();
      assert.match(new TextDecoder().decode(value), /held/);
      reader.releaseLock();
      await assert.rejects(async () => {
        const tree = await restore(dir);
        for (const pid of tree.pids) adoptPid(pid); // cleaned up by withTargets
      }, (e: Error) => {
        assert.ok(e instanceof RestoreError, String(e));
        assert.match(
          e.message,
          /^cannot restore: process \d+ held a write POSIX lock 20-29 on \S+\/ranges \(fd 3\), which a POSIX lock of process \d+ now conflicts with$/,
        );
        return true;
      });
    } finally {
      holder.kill("SIGKILL");
      await holder.status;
      await holder.stdout.cancel().catch(() => {});
    }
  }),
);

Deno.test(
  "file state refused by name: an fd open for writing on a file made immutable or append-only",
  withTargets(async () => {
    const rt = await startTriggered("rt_fileprobe", READY, {
      passWork: true,
      extra: ["immutable"],
    });
    try {
      await assertDumpRefused(rt.t.pid, (_items, message) => {
        assert.match(
          message,
          /process \d+ fd 3 \(\S+\/immutable\): immutable \(chattr \+i\): an fd open for writing/,
        );
        assert.match(
          message,
          /process \d+ fd 4 \(\S+\/appendonly\): append-only \(chattr \+a\) and the fd is not O_APPEND/,
        );
      });
      assert.equal(rt.t.poll(), undefined, "the target died");
      await Deno.writeTextFile(rt.trigger, "");
      const checks = ["immutable-fd", "immutable-write", "appendonly-fd"];
      assertChecksPassed(rt.t, checks, await rt.t.wait(), { what: "immutable" });
    } finally {
      // The target clears the flags at its end; one that failed first leaves them to us.
      await new Deno.Command("chattr", {
        args: ["-i", "-a", `${rt.work}/immutable`, `${rt.work}/appendonly`],
        stderr: "null",
      }).output();
    }
  }),
);
