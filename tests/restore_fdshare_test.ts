/**
 * Round trips of fd flags and of open file descriptions shared across the
 * tree (tests/targets/rt_fdshare.c): pipe flags exactly as before (in a
 * process, shared with a child, leading out of the tree to a non-blocking
 * restorer stdin), a regular file,
 * an eventfd and an epoll shared by parent and child after fork (kcmp
 * across the pids, the shared offset), fd owner / signal / O_ASYNC, paths
 * through a symlink; FIFOs (tests/targets/rt_fifo.c). And what is refused
 * by name (tests/targets/refused_fds.c): a deleted root,
 * a lease being broken. A deleted cwd comes back deleted
 * (tests/targets/rt_cwd_deleted.c). Processes sharing one fd table and
 * fs info come back sharing them (tests/targets/rt_files_shared.c); fds of
 * a removed directory or symlink hold one (tests/targets/rt_dir_removed.c).
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { RestoreError, UnsupportedError } from "../engine/errors.ts";
import { restore } from "../engine/restore/mod.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { pathExists, tempDir } from "./helpers/fs.ts";
import { statusField } from "./helpers/proc.ts";
import { dumpKillRestore, startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { SIGUSR1 } from "./helpers/signals.ts";
import { adoptPid, startTarget, type Target, withTargets } from "./helpers/targets.ts";
import { rawSyscall } from "../ffi/libc.ts";
import { SYS } from "../ffi/sysno.ts";

const READY = /^ready pid=(\d+) child=(\d+) outside=(\d+)$/m;

const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
const F_DUPFD_CLOEXEC = 1030;
const F_GETFL = 3;

/**
 * Runs `fn` with this process's stdin replaced by the read end of a new
 * O_NONBLOCK pipe (what a restore attaches a pipe leading out of the tree
 * to); returns the pipe's status flags afterwards.
 */
async function withNonblockingStdin(fn: () => Promise<void>): Promise<number> {
  const pair = new Int32Array(2);
  assert.equal(rawSyscall(SYS.pipe2, pair, O_NONBLOCK | O_CLOEXEC), 0n);
  const saved = Number(rawSyscall(SYS.fcntl, 0, F_DUPFD_CLOEXEC, 10));
  assert.ok(saved >= 0);
  try {
    assert.equal(rawSyscall(SYS.dup3, pair[0], 0, 0), 0n);
    await fn();
    return Number(rawSyscall(SYS.fcntl, pair[0], F_GETFL));
  } finally {
    rawSyscall(SYS.dup3, saved, 0, 0);
    for (const fd of [saved, pair[0], pair[1]]) rawSyscall(SYS.close, fd);
  }
}

/** The fd of `pid` holding a pipe that `outside` holds too. */
function outsideFd(pid: number, outside: number): number {
  const theirs = new Set(
    [...Deno.readDirSync(`/proc/${outside}/fd`)].map((e) =>
      Deno.readLinkSync(`/proc/${outside}/fd/${e.name}`)
    ),
  );
  const ours = [...Deno.readDirSync(`/proc/${pid}/fd`)].map((e) => Number(e.name)).filter((fd) => {
    const link = Deno.readLinkSync(`/proc/${pid}/fd/${fd}`);
    return link.startsWith("pipe:") && theirs.has(link);
  });
  assert.equal(ours.length, 1, `one fd of ${pid} leads to ${outside}`);
  return ours[0];
}

Deno.test(
  "fd flags, shared open file descriptions, owners and symlinked paths survive",
  withTargets(async () => {
    const { t, trigger, ready } = await startTriggered("rt_fdshare", READY, { passWork: true });
    const outside = Number(ready[3]);
    adoptPid(outside); // the process holding the pipe's other end, outside the tree
    // The pipe leading out of the tree (above fd 2) comes back as what
    // --inherit-fd gives, here the restorer's stdin, a non-blocking pipe:
    // the target's end must still be blocking.
    const fd = outsideFd(t.pid, outside);
    let pids = 0;
    const flags = await withNonblockingStdin(async () => {
      pids = (await dumpKillRestore(t, { inheritFds: new Map([[fd, "fd:0"]]) })).tree.pids.length;
    });
    assert.equal(pids, 2, "the child is restored too");
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, [
      "pipe-flags-in-process",
      "pipe-flags-shared",
      "pipe-flags-outside",
      "eventfd-epoll-flags",
      "shared-file",
      "shared-eventfd",
      "shared-epoll",
      "epoll-watch",
      "child-said",
      "child",
      "shared-offset",
      "shared-eventfd-count",
      "file-flags",
      "owner",
      "async-signal",
      "symlinked-file",
      "symlinked-cwd",
    ], await t.wait());
    assert.equal(
      flags & O_NONBLOCK,
      0,
      "the restorer's pipe shares the target's (blocking) description",
    );
  }),
);

const FIFO_READY = /^ready pid=(\d+) child=(\d+) fd=(\d+)$/m;

Deno.test(
  "FIFOs opened by path keep their flags, paths and buffered bytes, also shared with a child",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_fifo", FIFO_READY, { passWork: true });
    const { tree } = await dumpKillRestore(t);
    assert.equal(tree.pids.length, 2, "the child is restored too");
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(
      t,
      ["fifo-flags", "fifo-path", "fifo-bytes", "fifo-works", "fifo-shared", "child"],
      await t.wait(),
    );
  }),
);

/**
 * A dump of `t` must be refused with a line matching `line`, write nothing,
 * and leave `t` running untouched (it checks itself after SIGUSR1).
 */
async function assertRefused(t: Target, line: RegExp, checks: string[]): Promise<void> {
  const dir = await tempImageDir();
  await assert.rejects(
    () => checkpoint(t.pid, { dir }),
    (e: unknown) => e instanceof UnsupportedError && line.test(e.message),
  );
  assert.equal(pathExists(dir), false, "an image directory was left behind");
  assert.equal(statusField(t.pid, "TracerPid"), "0");
  t.signal(SIGUSR1);
  assertChecksPassed(t, checks, await t.wait());
}

for (
  const [mode, line, checks] of [
    ["root-deleted", /process \d+ root \(.*gone \(deleted\)\): root directory deleted/, [
      "root",
    ]],
    ["lease", /fd \d+ \(.*leased\): file leases being broken .*: .*LEASE +BREAKING/, ["lease"]],
    ["pipe-reopen", /fd \d+ \(pipe:\[\d+\]\): a pipe end open through several descriptions/, [
      "fd-open",
    ]],
    ["lock-mapped", /process \d+: FLOCK WRITE lock on .*mapped: file locks no fd shows/, [
      "still-locked",
    ]],
    [
      "owner-outside",
      /fd \d+ \(\/dev\/null\): fd owners outside the tree .*: owned by process \d+/,
      [
        "owner",
      ],
    ],
  ] as const
) {
  Deno.test(
    `refused by name: ${mode}`,
    withTargets(async () => {
      const work = await tempDir("cryo-refused-fds-");
      const t = await startTarget("refused_fds", [work, mode]);
      await t.waitFor(/^ready pid=\d+ fd=-?\d+$/m);
      await assertRefused(t, line, [...checks]);
    }),
  );
}

Deno.test(
  "a process chroot()ed into a directory keeps its root and cwd",
  withTargets(async () => {
    const { t, work } = await startTriggered("rt_chroot", /^ready pid=(\d+)$/m, { passWork: true });
    await dumpKillRestore(t);
    await Deno.writeTextFile(`${work}/jail/go`, "");
    assertChecksPassed(t, ["root", "cwd"], await t.wait());
  }),
);

Deno.test(
  "descriptions shared by siblings and cousins come from their common ancestor, which keeps no transfer fd",
  withTargets(async () => {
    const { t, trigger, ready } = await startTriggered(
      "rt_fdsiblings",
      /^ready pid=(\d+) c1=(\d+) c2=(\d+) g1=(\d+) e=\d+ f=\d+$/m,
      { passWork: true },
    );
    const { tree } = await dumpKillRestore(t);
    assert.deepEqual(
      [...tree.pids].sort((a, b) => a - b),
      [t.pid, ...ready.slice(2, 5).map(Number)].sort((a, b) => a - b),
    );
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(
      t,
      ["cousins-share-eventfd", "siblings-share-file", "no-transfer-fds", "children"],
      await t.wait(),
    );
  }),
);

Deno.test(
  "a restore whose shared file is missing is refused before anything is created",
  withTargets(async () => {
    const { t, work, ready } = await startTriggered(
      "rt_fdsiblings",
      /^ready pid=(\d+) c1=(\d+) c2=(\d+) g1=(\d+) e=\d+ f=\d+$/m,
      { passWork: true },
    );
    const pids = [t.pid, ...ready.slice(2, 5).map(Number)];
    for (const pid of pids.slice(1)) adoptPid(pid);
    const dir = await tempImageDir();
    await checkpoint(t.pid, { dir });
    await t.wait();
    await Deno.remove(`${work}/f`);
    await assert.rejects(
      () => restore(dir),
      (e: unknown) =>
        e instanceof RestoreError &&
        /fd \d+ of process \d+ was .*\/f, which is missing/.test(e.message),
    );
    for (const pid of pids) assert.equal(pathExists(`/proc/${pid}`), false, `pid ${pid} exists`);
  }),
);

for (const lazy of [false, true]) {
  Deno.test(
    `processes sharing one fd table (CLONE_FILES) and fs info (CLONE_FS) come back sharing them${
      lazy ? " (--lazy)" : ""
    }`,
    withTargets(async () => {
      const { t, trigger, ready } = await startTriggered(
        "rt_files_shared",
        /^ready pid=(\d+) pids=(\d+),(\d+),(\d+),(\d+)$/m,
        { passWork: true },
      );
      for (const pid of ready.slice(2, 6).map(Number)) adoptPid(pid);
      const { dump, tree } = await dumpKillRestore(t, { lazy });
      assert.equal(dump.manifest.processes.length, 5, "the whole tree was dumped");
      // (A process in its parent's table is restored eagerly: the parent's fd phase comes after it.)
      const serving = tree.lazy?.serve();
      await Deno.writeTextFile(trigger, "");
      assertChecksPassed(
        t,
        [
          "kcmp-files",
          "kcmp-files-grand",
          "kcmp-fs-grand",
          "kcmp-fs",
          "own-table",
          "fs-own-table",
          "files-own-fs",
          "root-memory",
          "files-sees-fd",
          "close-seen",
          "fs-sees-cwd-umask",
        ],
        await t.wait(),
      );
      await serving;
    }),
  );
}

Deno.test(
  "fds of a removed directory (O_DIRECTORY, O_PATH) come back on one removed directory, its mode, owner and times; an O_PATH fd of a removed symlink on a removed symlink",
  withTargets(async () => {
    const work = await tempDir("cryo-dir-removed-");
    const t = await startTarget("rt_dir_removed", [work]);
    await t.waitFor(/^ready pid=\d+$/m);
    await dumpKillRestore(t);
    assert.equal(
      pathExists(`${work}/outer`),
      false,
      "the directories made for the restore are gone",
    );
    t.signal(SIGUSR1);
    assertChecksPassed(
      t,
      [
        "fstat",
        "dir-unlinked",
        "same-inode",
        "link",
        "mode",
        "owner",
        "times",
        "flags",
        "no-create",
        "paths-free",
        "link-removed",
        "link-content",
        "link-owner",
        "link-path",
      ],
      await t.wait(),
    );
  }),
);

Deno.test(
  "a deleted cwd comes back deleted: the same path, no links, nothing created, the path free, its mode, owner and times",
  withTargets(async () => {
    const work = await tempDir("cryo-cwd-deleted-");
    const t = await startTarget("rt_cwd_deleted", [work]);
    await t.waitFor(/^ready pid=\d+$/m);
    await dumpKillRestore(t);
    assert.equal(pathExists(`${work}/gone`), false, "the directory made for the restore is gone");
    t.signal(SIGUSR1);
    assertChecksPassed(
      t,
      [
        "cwd-link",
        "cwd-unlinked",
        "cwd-no-create",
        "path-free",
        "fd-is-cwd",
        "cwd-mode",
        "cwd-owner",
        "cwd-times",
      ],
      await t.wait(),
    );
  }),
);

Deno.test(
  "a deleted cwd whose path is taken again is refused at restore before anything runs",
  withTargets(async () => {
    const work = await tempDir("cryo-cwd-taken-");
    const t = await startTarget("rt_cwd_deleted", [work]);
    await t.waitFor(/^ready pid=\d+$/m);
    const image = await tempImageDir();
    await checkpoint(t.pid, { dir: image });
    await t.wait();
    Deno.mkdirSync(`${work}/gone`);
    await assert.rejects(
      () => restore(image),
      (e: unknown) =>
        e instanceof RestoreError &&
        /was deleted before the dump and its path is taken now/.test(e.message),
    );
    assert.equal(pathExists(`/proc/${t.pid}`), false, "nothing was created");
  }),
);
