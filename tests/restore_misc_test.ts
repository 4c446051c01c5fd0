/**
 * Round trips of process attributes (tests/targets/rt_misc.c: rlimits,
 * umask, cwd, comm, personality, session, signal mask, a mapped file),
 * restoring one image twice, checkpointing a restored process again,
 * `leaveRunning` dumps, and the ways a restore must refuse cleanly: pid in
 * use, corrupt, truncated or incompatible images, changed or missing
 * backing files. A refused restore must leave no process behind and the
 * image untouched.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { checkpoint } from "../engine/dump/mod.ts";
import { restore } from "../engine/restore/mod.ts";
import { RestoreError } from "../engine/errors.ts";
import { ImageFormatError } from "../engine/image/errors.ts";
import { readImageFile } from "../engine/image/reader.ts";
import { rawSyscall } from "../ffi/libc.ts";
import { SYS } from "../ffi/sysno.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { statusField } from "./helpers/proc.ts";
import {
  dumpKillRestore,
  startTriggered,
  tempImageDir,
  type TriggeredTarget,
} from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";
import { sleep } from "./helpers/wait.ts";

/** The checks rt_misc.c reports (without the highfd mode). */
const MISC_CHECKS = [
  "rlimit-nofile",
  "rlimit-core",
  "rlimit-all",
  "umask",
  "cwd",
  "cwd-relative",
  "comm",
  "personality",
  "session",
  "ids",
  "sigmask",
  "no-pending-signals",
  "no-eintr",
  "not-traced",
  "mapped-file",
];

const READY = /^ready pid=(\d+) ppid=(\d+) mapped=(.*)$/m;

/** Lines of `out` from the `n`-th "ready" line on (n = 1 for the first). */
function sinceReady(out: string, n = 1): string {
  const parts = out.split(/^(?=ready pid=)/m);
  return parts.slice(n).join("");
}

/**
 * Children of the calling thread (live or zombie). `deno test --parallel`
 * runs test files as threads of one process: only this thread's children
 * can come from this test's restores.
 */
function childPids(): number[] {
  const tid = Number(rawSyscall(SYS.gettid));
  const text = Deno.readTextFileSync(`/proc/self/task/${tid}/children`).trim();
  return text === "" ? [] : text.split(/\s+/).map(Number).sort((a, b) => a - b);
}

/** Whether a process (or zombie) has the id `pid` (`kill(pid, 0)` does not say ESRCH). */
function pidTaken(pid: number): boolean {
  return rawSyscall(SYS.kill, pid, 0) !== -3n;
}

/** SHA-256 of every file of an image directory, by name. */
async function dirHashes(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for await (const e of Deno.readDir(dir)) {
    const bytes = await Deno.readFile(`${dir}/${e.name}`);
    out[e.name] = createHash("sha256").update(bytes).digest("hex");
  }
  return out;
}

/**
 * Runs a restore that must fail: checks the error's class and message,
 * that no process was left behind, and that the image directory is
 * byte-for-byte unchanged.
 */
async function assertRestoreRefused(
  dir: string,
  errorClass: typeof RestoreError | typeof ImageFormatError,
  message: RegExp,
): Promise<void> {
  const before = childPids();
  const hashes = await dirHashes(dir);
  await assert.rejects(restore(dir), (e: unknown) => {
    assert.ok(e instanceof errorClass, `expected ${errorClass.name}, got ${e}`);
    assert.match((e as Error).message, message);
    return true;
  });
  assert.deepEqual(childPids(), before, "the refused restore left a process behind");
  assert.deepEqual(await dirHashes(dir), hashes, "the refused restore changed the image");
}

/** Starts rt_misc (with `extra` arguments) in a fresh work dir and waits until it is ready. */
function startMisc(extra: string[] = []): Promise<TriggeredTarget> {
  return startTriggered("rt_misc", READY, { passWork: true, extra });
}

/**
 * Creates the trigger file of `m` and asserts that its `run`-th report
 * passes every check of `names`.
 */
async function triggerAndPass(m: TriggeredTarget, run = 1, names = MISC_CHECKS): Promise<void> {
  await Deno.writeTextFile(m.trigger, "");
  assertChecksPassed(m.t, names, await m.t.wait(), { run });
}

/**
 * Restores the image `dir` of `m` (again; a trigger file left by an
 * earlier run is removed first), checks it comes back with the same pid,
 * then triggers it and asserts that its `run`-th report passes.
 */
async function restoreAndPass(m: TriggeredTarget, dir: string, run = 1): Promise<void> {
  await Deno.remove(m.trigger).catch((e) => {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  });
  const tree = await restore(dir);
  m.t.resetAfterRestore();
  assert.equal(tree.rootPid, m.t.pid);
  await triggerAndPass(m, run);
}

Deno.test(
  "process attributes survive dump, kill and restore (rlimits, umask, cwd, comm, personality)",
  withTargets(async () => {
    const misc = await startMisc();
    await dumpKillRestore(misc.t);
    await triggerAndPass(misc);
    // The restored process is a child of the restoring process.
    const ppid = Number(sinceReady(misc.t.output()).match(/^info ppid=(\d+)/m)?.[1]);
    assert.equal(ppid, Deno.pid, `parent after restore is ${ppid}, restorer is ${Deno.pid}`);
  }),
);

Deno.test(
  "an fd numbered above the soft RLIMIT_NOFILE survives a round trip",
  // The restore program must place the fds before it lowers RLIMIT_NOFILE.
  withTargets(async () => {
    const misc = await startMisc(["highfd"]);
    await dumpKillRestore(misc.t);
    await triggerAndPass(misc, 1, [...MISC_CHECKS, "fd-above-nofile"]);
  }),
);

Deno.test(
  "one image restores twice, each restored process running to completion",
  withTargets(async () => {
    const misc = await startMisc();
    const { dir } = await dumpKillRestore(misc.t);
    await triggerAndPass(misc, 1);
    await restoreAndPass(misc, dir, 2);
  }),
);

Deno.test(
  "a restored process can be checkpointed and restored again (C/R/C/R)",
  withTargets(async () => {
    const misc = await startMisc();
    const files = await startTriggered("rt_files", /^ready pid=(\d+)/m, { passWork: true });
    const dirs: string[] = [];
    for (const { t } of [misc, files]) {
      for (let round = 0; round < 2; round++) {
        const rt = await dumpKillRestore(t);
        dirs.push(rt.dir);
        assert.equal(rt.tree.rootPid, t.pid, `round ${round + 1}`);
      }
    }
    // The second image was taken from a restored process: no bootstrap left in it.
    const second = await readImageFile(`${dirs[1]}/${misc.t.pid}.elf`);
    const first = await readImageFile(`${dirs[0]}/${misc.t.pid}.elf`);
    const layout = (i: typeof first) =>
      i.process.mappings.map((m) => `${m.start}-${m.end} ${m.perms} ${m.name}`);
    assert.deepEqual(layout(second), layout(first));

    await Deno.writeTextFile(misc.trigger, "");
    await triggerAndPass(files, 1, ["fd-set", "dup-shared", "append-writes"]);
    assertChecksPassed(misc.t, MISC_CHECKS, await misc.t.wait());
  }),
);

Deno.test(
  "leaveRunning: the target goes on undisturbed, and its image restores after it is gone",
  withTargets(async () => {
    const misc = await startMisc();
    const pid = misc.t.pid;
    const dir = await tempImageDir();
    await checkpoint(pid, { dir, leaveRunning: true, precopy: true });
    assert.equal(misc.t.poll(), undefined, "the target died");
    await sleep(100);
    assert.equal(Number(statusField(pid, "TracerPid")), 0, "still traced after the dump");
    const state = statusField(pid, "State");
    assert.match(state, /^[SR] /, `state ${state} after the dump`);
    await triggerAndPass(misc, 1);
    await restoreAndPass(misc, dir, 2);
  }),
);

Deno.test(
  "restore refuses a pid that is in use, creating nothing",
  withTargets(async () => {
    const misc = await startMisc();
    const dir = await tempImageDir();
    await checkpoint(misc.t.pid, { dir, leaveRunning: true });
    assert.ok(childPids().includes(misc.t.pid), "childPids() does not see the target");
    await assertRestoreRefused(
      dir,
      RestoreError,
      new RegExp(`^cannot restore: pid ${misc.t.pid} is in use by rt-misc-name$`),
    );
    assert.equal(misc.t.poll(), undefined, "the running original died");
    // Once the original is gone, the same image restores.
    await misc.t.kill();
    await restoreAndPass(misc, dir);
  }),
);

/** Copies an image directory (flat) to a new temporary one. */
async function copyImage(dir: string): Promise<string> {
  const copy = await tempImageDir();
  await Deno.mkdir(copy);
  for await (const e of Deno.readDir(dir)) {
    await Deno.copyFile(`${dir}/${e.name}`, `${copy}/${e.name}`);
  }
  return copy;
}

Deno.test(
  "restore refuses corrupt, truncated and incompatible images, creating nothing",
  withTargets(async () => {
    const misc = await startMisc();
    const pid = misc.t.pid;
    const dir = await tempImageDir();
    const variant = async (edit: (copy: string) => Promise<void>) => {
      const copy = await copyImage(dir);
      await edit(copy);
      return copy;
    };
    const elf = (d: string) => `${d}/${pid}.elf`;
    const editManifest = async (d: string, change: (m: Record<string, unknown>) => void) => {
      const m = JSON.parse(await Deno.readTextFile(`${d}/manifest.json`));
      change(m);
      await Deno.writeTextFile(`${d}/manifest.json`, JSON.stringify(m, null, 2));
    };
    await checkpoint(pid, { dir });
    await misc.t.wait();
    const info = await readImageFile(elf(dir));
    const run = info.process.mappings.flatMap((m) => m.pages)[0];
    assert.ok(run, "the image has no page data");

    // One byte of page data flipped: the checksum catches it.
    const corrupt = await variant(async (d) => {
      using f = await Deno.open(elf(d), { read: true, write: true });
      const b = new Uint8Array(1);
      await f.seek(run.fileOffset + 100, Deno.SeekMode.Start);
      await f.read(b);
      b[0] ^= 0x40;
      await f.seek(run.fileOffset + 100, Deno.SeekMode.Start);
      await f.write(b);
    });
    await assertRestoreRefused(
      corrupt,
      ImageFormatError,
      /checksum crc32:[0-9a-f]+ differs from the manifest/,
    );

    // Truncated to half its size.
    const half = Math.floor(info.size / 2);
    const truncated = await variant((d) => Deno.truncate(elf(d), half));
    await assertRestoreRefused(truncated, ImageFormatError, /size \d+ differs from the manifest/);

    // Truncated, with a manifest edited to match (no checksum): the reader catches it.
    const cut = await variant(async (d) => {
      await Deno.truncate(elf(d), half);
      await editManifest(d, (m) => {
        const p = (m.processes as { size: number; checksum: string }[])[0];
        p.size = half;
        p.checksum = "";
      });
    });
    await assertRestoreRefused(cut, ImageFormatError, /truncated|beyond end of file/);

    // Another format version.
    const version = await variant((d) => editManifest(d, (m) => m.formatVersion = 99));
    await assertRestoreRefused(version, ImageFormatError, /image format version 99/);

    // Another kernel's vdso (its layout, or its code by hash): refused by the preflight, before
    // anything is created.
    const layout = await variant((d) =>
      editManifest(d, (m) => {
        const host = m.host as { vdso: { name: string; size: number }[] };
        host.vdso = host.vdso.map((v) => ({ ...v, size: v.size + 4096 }));
      })
    );
    await assertRestoreRefused(layout, RestoreError, /vdso layout .* differs from the dumped one/);
    const vdso = await variant((d) =>
      editManifest(d, (m) => (m.host as { vdsoSha256: string }).vdsoSha256 = "00".repeat(32))
    );
    await assertRestoreRefused(
      vdso,
      RestoreError,
      /this kernel's vdso differs from the dumped one/,
    );
    const seen: string[] = [];
    await assert.rejects(restore(vdso, { onEvent: (e) => seen.push(e.type) }), /vdso differs/);
    assert.deepEqual(seen, [], "nothing was launched");
    assert.ok(!pidTaken(pid), "the refused restore left its pid taken");

    // No manifest, or no image file.
    const noManifest = await variant((d) => Deno.remove(`${d}/manifest.json`));
    await assertRestoreRefused(noManifest, ImageFormatError, /no manifest\.json/);
    const noElf = await variant((d) => Deno.remove(elf(d)));
    await assertRestoreRefused(noElf, ImageFormatError, /missing/);

    // The pristine image still restores.
    await restoreAndPass(misc, dir);
  }),
);

Deno.test(
  "restore refuses a backing file that is missing or changed since the dump",
  withTargets(async () => {
    const misc = await startMisc();
    const mapped = misc.ready[3];
    const dir = await tempImageDir();
    await checkpoint(misc.t.pid, { dir });
    await misc.t.wait();
    const original = await Deno.readFile(mapped);
    const st = await Deno.stat(mapped);

    await Deno.rename(mapped, `${mapped}.away`);
    await assertRestoreRefused(
      dir,
      RestoreError,
      new RegExp(`^cannot restore: file mapped by ${misc.t.pid} ${mapped} is missing$`),
    );
    await Deno.rename(`${mapped}.away`, mapped);

    // Same inode and size, other content (and so another mtime).
    const changed = original.slice();
    changed[10] ^= 0xff;
    await sleep(20);
    await Deno.writeFile(mapped, changed);
    await assertRestoreRefused(
      dir,
      RestoreError,
      new RegExp(`^cannot restore: file mapped by ${misc.t.pid} ${mapped} changed since the dump$`),
    );

    // Put back as it was (content and mtime): its change time, which utimes cannot set, moved;
    // cryo keeps no hash of the file to tell that the bytes are the same: still refused.
    await Deno.writeFile(mapped, original);
    await Deno.utime(mapped, st.atime!, st.mtime!);
    await assertRestoreRefused(
      dir,
      RestoreError,
      new RegExp(
        `^cannot restore: file mapped by ${misc.t.pid} ${mapped} changed since the dump \\(its change time moved`,
      ),
    );
  }),
);
