/**
 * Files with no name to reopen (tests/targets/rt_ghost.c): files deleted
 * while open or mapped, O_TMPFILE files, sealed memfds and removed POSIX
 * shared memory come back unlinked with their content, holes, size, mode,
 * access and modification times (to the nanosecond), seals, offsets and access modes, and fds and mappings of one file stay
 * one file (also a deleted mkstemp file, opened with O_NOFOLLOW). SHM_LOCKed System V shared memory is refused by name
 * (tests/restore_sysvshm_test.ts restores the rest).
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { UnsupportedError } from "../engine/errors.ts";
import { tempDir } from "./helpers/fs.ts";
import { dumpKillRestore, tempImageDir } from "./helpers/roundtrip.ts";
import { startTarget, withTargets } from "./helpers/targets.ts";
import { signalThenPass } from "./helpers/checks.ts";

Deno.test(
  "ghost files: deleted files, O_TMPFILE, memfd and removed shm come back whole and shared",
  withTargets(async () => {
    const work = await tempDir("cryo-ghost-");
    const t = await startTarget("rt_ghost", [work]);
    await t.waitFor(/^ready pid=\d+$/m);
    const { dump } = await dumpKillRestore(t);
    const ghosts = dump.manifest.ghosts ?? [];
    assert.deepEqual(ghosts.map((g) => g.kind).sort(), ["deleted", "deleted", "deleted", "memfd"]);
    const sparse = ghosts.find((g) => g.name.endsWith("/deleted.bin"))!;
    assert.equal(sparse.size, 64 << 20);
    assert.deepEqual(sparse.times, { atime: [1000, 250000000], mtime: [123456, 789] });
    assert.ok(
      sparse.extents.reduce((n, [, len]) => n + len, 0) < 1 << 20,
      "holes are not stored",
    );
    await signalThenPass(t);
  }),
);

Deno.test(
  "ghost files: a deleted mkstemp file (O_NOFOLLOW) shared with a child comes back (gunicorn)",
  withTargets(async () => {
    const work = await tempDir("cryo-ghost-nofollow-");
    const t = await startTarget("rt_ghost_nofollow", [work]);
    await t.waitFor(/^ready pid=\d+$/m);
    const { dump, tree } = await dumpKillRestore(t);
    assert.equal(tree.pids.length, 2, `restored pids ${tree.pids}`);
    assert.deepEqual((dump.manifest.ghosts ?? []).map((g) => g.kind), ["deleted"]);
    await signalThenPass(t);
  }),
);

Deno.test(
  "ghost files: SHM_LOCKed System V shared memory is refused by name; the target runs on",
  withTargets(async () => {
    const t = await startTarget("/usr/bin/python3", [
      "-c",
      "import ctypes,time\n" +
      "libc=ctypes.CDLL(None); libc.shmat.restype=ctypes.c_void_p\n" +
      "i=libc.shmget(0,4096,0o1600); a=libc.shmat(i,None,0); libc.shmctl(i,11,None)\n" +
      "libc.shmctl(i,0,None)\n" +
      "print('ready', flush=True); time.sleep(60)",
    ]);
    await t.waitFor(/^ready$/m);
    const dir = await tempImageDir();
    await assert.rejects(
      () => checkpoint(t.pid, { dir }),
      (e: unknown) => e instanceof UnsupportedError && /SYSV.*SHM_LOCK/.test(e.message),
    );
    assert.equal(t.poll(), undefined, "still running");
  }),
);
