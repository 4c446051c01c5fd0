/**
 * System V shared memory (tests/targets/rt_sysvshm.c): a keyed segment
 * attached read-write and read-only, and an IPC_PRIVATE one removed while
 * attached, shared by a parent and its child, come back with the same
 * ids, key, size, mode, owner, content, attach addresses and removal mark.
 * The keyed segment outlives the killed tree: the restore takes it back as
 * it is when it is still exactly the image's (no attach, same key, size,
 * mode, owners and content), and refuses it, naming the id, once changed; a
 * restore of damaged segment content fails and leaves no segment behind;
 * an attachment partly unmapped, or a segment also attached outside the
 * tree, is refused at dump.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { restore } from "../engine/restore/mod.ts";
import { RestoreError, UnsupportedError } from "../engine/errors.ts";
import { readSysvShm } from "../engine/memory/sysvshm.ts";
import { withShmAttached } from "../ffi/sysvshm.ts";
import { readImageFile } from "../engine/image/reader.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { adoptPid, startTarget, withTargets } from "./helpers/targets.ts";

/** The SysV attachment lines of a process's maps, without the device column. */
function sysvMaps(pid: number): string[] {
  return Deno.readTextFileSync(`/proc/${pid}/maps`).split("\n")
    .filter((l) => l.includes("/SYSV"))
    .map((l) => l.split(/\s+/).filter((_, i) => i !== 3).join(" "));
}

const READY = /^ready pid=(\d+) child=(\d+) a=(\d+) b=(\d+)$/m;

/** Removes segment `id` (one this test created) if it still exists. */
async function ipcrm(id: number): Promise<void> {
  if (!readSysvShm().has(id)) return;
  await new Deno.Command("ipcrm", { args: ["-m", String(id)] }).output();
}

Deno.test(
  "System V shm: ids, key, owner, content, attachments and removal mark survive",
  withTargets(async () => {
    const { t, trigger, ready } = await startTriggered("rt_sysvshm", READY);
    const child = Number(ready[2]);
    adoptPid(child); // cleaned up by pid, before the dump and after the restore (same pid)
    const a = Number(ready[3]), b = Number(ready[4]);
    try {
      const before = [sysvMaps(t.pid), sysvMaps(child)];
      assert.equal(before[0].length, 5, before[0].join("\n"));
      const dir = await tempImageDir();
      const dump = await checkpoint(t.pid, { dir });
      await t.wait();
      const segs = dump.manifest.sysvShm ?? [];
      assert.deepEqual(
        segs.map((s) => [s.shmid, s.size, s.mode, s.uid, s.gid, s.removed]).sort(),
        [[a, 3 * 4096 + 100, 0o640, 1234, 5678, false], [b, 8192, 0o600, 0, 0, true]].sort(),
      );
      // The segment pages are not in the process images.
      const image = (await readImageFile(`${dir}/${t.pid}.elf`)).process;
      const attached = image.mappings.filter((m) => m.sysvShm !== undefined);
      assert.equal(attached.length, 5);
      assert.ok(attached.every((m) => m.kind === "sysv-shm" && m.pages.length === 0));

      // The keyed segment outlives the killed tree (as PostgreSQL's does). Changed since the dump,
      // it is not the image's: refused, naming the id.
      assert.ok(readSysvShm().has(a));
      withShmAttached(a, 1, true, (v) => v[0] ^= 0xff);
      await assert.rejects(
        () => restore(dir),
        (e: unknown) =>
          e instanceof RestoreError &&
          new RegExp(`shm id ${a} is in use on this host \\(its content changed`).test(e.message),
      );
      // As the dump left it again: the restore takes it back as it is (below).
      withShmAttached(a, 1, true, (v) => v[0] ^= 0xff);

      // Damaged content: refused, and no segment the restore created is left behind (the leftover
      // a stays: the restore did not create it).
      const bSeg = segs.find((s) => s.shmid === b)!;
      const data = await Deno.readFile(`${dir}/${bSeg.file}`);
      data[0] ^= 0xff;
      await Deno.writeFile(`${dir}/${bSeg.file}`, data);
      await assert.rejects(
        () => restore(dir),
        (e: unknown) => e instanceof RestoreError && /sysvshm-\d+\.data: checksum/.test(e.message),
      );
      assert.ok(!readSysvShm().has(b), "a created segment was left");
      assert.ok(readSysvShm().has(a), "the leftover was removed");
      data[0] ^= 0xff;
      await Deno.writeFile(`${dir}/${bSeg.file}`, data);

      const tree = await restore(dir);
      t.resetAfterRestore();
      assert.deepEqual([...tree.pids].sort(), [t.pid, child].sort());
      // Same attachments: addresses, protections, shmids (the inode column).
      assert.deepEqual([sysvMaps(t.pid), sysvMaps(child)], before);
      const now = readSysvShm();
      assert.equal(now.get(b)?.nattch, 2);
      assert.equal((now.get(b)?.perms ?? 0) & 0o1000, 0o1000, "b is marked for removal");

      await Deno.writeTextFile(trigger, "");
      assertChecksPassed(t, [
        "stat-a",
        "stat-b",
        "key-a",
        "size-a",
        "mode-a",
        "owner-a",
        "creator-a",
        "nattch-a",
        "key-b",
        "size-b",
        "removed-b",
        "mode-b",
        "nattch-b",
        "ro-page",
        "content-a",
        "content-ro",
        "content-b",
        "ro-stays-ro",
        "parent-sees-child-b",
        "parent-sees-child-a",
        "parent-sees-child-ro",
        "child",
      ], await t.wait(20000));
    } finally {
      await ipcrm(a);
      await ipcrm(b);
    }
  }),
);

Deno.test(
  "System V shm: an attachment partly unmapped is refused by name; the target runs on",
  withTargets(async () => {
    const t = await startTarget("/usr/bin/python3", [
      "-c",
      "import ctypes,time\n" +
      "libc=ctypes.CDLL(None); libc.shmat.restype=ctypes.c_void_p\n" +
      "i=libc.shmget(0,3*4096,0o1600); a=libc.shmat(i,None,0); libc.shmctl(i,0,None)\n" +
      "libc.munmap(ctypes.c_void_p(a),4096)\n" +
      "print('ready', flush=True); time.sleep(60)",
    ]);
    await t.waitFor(/^ready$/m);
    const dir = await tempImageDir();
    await assert.rejects(
      () => checkpoint(t.pid, { dir }),
      (e: unknown) =>
        e instanceof UnsupportedError &&
        /SYSV.*partly unmapped.*starts at offset 0x1000/.test(e.message),
    );
    assert.equal(t.poll(), undefined, "still running");
  }),
);

Deno.test(
  "System V shm: a segment also attached outside the tree is refused by name; the target runs on",
  withTargets(async () => {
    const t = await startTarget("/usr/bin/python3", [
      "-c",
      "import ctypes,os,time\n" +
      "libc=ctypes.CDLL(None); libc.shmat.restype=ctypes.c_void_p\n" +
      "i=libc.shmget(0,4096,0o1600); a=libc.shmat(i,None,0); libc.shmctl(i,0,None)\n" +
      "c=os.fork()\n" +
      "if c==0: time.sleep(60); os._exit(0)\n" +
      "print('ready child=%d' % c, flush=True); time.sleep(60)",
    ]);
    const child = Number((await t.waitFor(/^ready child=(\d+)$/m))[1]);
    adoptPid(child);
    const dir = await tempImageDir();
    await assert.rejects(
      () => checkpoint(child, { dir }),
      (e: unknown) =>
        e instanceof UnsupportedError &&
        /SYSV.*attached by processes outside the tree.*2 attaches, 1 of them/.test(e.message),
    );
    assert.equal(t.poll(), undefined, "still running");
    // Asleep in its loop, or running just after the thaw's wake-up (seen under load): not stopped.
    const state = Deno.readTextFileSync(`/proc/${child}/stat`).split(" ")[2];
    assert.match(state, /^[RS]$/, `state ${state}: not stopped`);
  }),
);
