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
import { dumpKillRestore, removeImageDir, tempImageDir } from "./helpers/roundtrip.ts";
import { startTarget, type Target, withTargets } from "./helpers/targets.ts";

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
 * Asserts that the `run`-th report of the target (counting PASS/FAIL
 * lines) has every expected check ok and ends in PASS, and that it exited 0.
 */
function assertChecksPassed(
  t: Target,
  names: string[],
  code: number | undefined,
  run = 1,
): void {
  const out = t.output();
  const reports = out.split(/^(?:PASS|FAIL)$/m);
  assert.ok(reports.length > run, `report ${run} missing in:\n${out}`);
  const report = reports[run - 1];
  const failed = report.split("\n").filter((l) => /^check \S+ FAIL/.test(l));
  assert.deepEqual(failed, [], `target reported failures:\n${out}`);
  for (const name of names) {
    assert.match(
      report,
      new RegExp(`^check ${name} ok$`, "m"),
      `no "check ${name} ok" in:\n${out}`,
    );
  }
  const verdicts = out.match(/^(PASS|FAIL)$/gm) ?? [];
  assert.equal(verdicts[run - 1], "PASS", out);
  assert.equal(code, 0, out);
}

function exitCode(st: { kind: string; code?: number }): number | undefined {
  return st.kind === "exited" ? st.code : undefined;
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

/** Starts rt_misc in a fresh work dir; returns the target, its trigger and work dir. */
async function startMisc(
  extra: string[] = [],
): Promise<{ t: Target; trigger: string; work: string; ready: RegExpMatchArray }> {
  const work = await Deno.makeTempDir({ prefix: "cryo-rt-misc-" });
  const trigger = `${work}/go`;
  const t = await startTarget("rt_misc", [trigger, work, ...extra]);
  const ready = await t.waitFor(READY);
  assert.equal(Number(ready[1]), t.pid);
  return { t, trigger, work, ready };
}

Deno.test(
  "process attributes survive dump, kill and restore (rlimits, umask, cwd, comm, personality)",
  withTargets(async () => {
    const { t, trigger, work } = await startMisc();
    let dir: string | undefined;
    try {
      const pid = t.pid;
      const rt = await dumpKillRestore(t);
      dir = rt.dir;
      assert.equal(rt.tree.rootPid, pid);
      await Deno.writeTextFile(trigger, "");
      assertChecksPassed(t, MISC_CHECKS, exitCode(await t.wait()));
      // The restored process is a child of the restoring process.
      const ppid = Number(sinceReady(t.output()).match(/^info ppid=(\d+)/m)?.[1]);
      assert.equal(ppid, Deno.pid, `parent after restore is ${ppid}, restorer is ${Deno.pid}`);
    } finally {
      if (dir) await removeImageDir(dir);
      await Deno.remove(work, { recursive: true }).catch(() => {});
    }
  }),
);

Deno.test(
  "an fd numbered above the soft RLIMIT_NOFILE survives a round trip",
  // The restore program must place the fds before it lowers RLIMIT_NOFILE.
  withTargets(async () => {
    const { t, trigger, work } = await startMisc(["highfd"]);
    let dir: string | undefined;
    try {
      const rt = await dumpKillRestore(t);
      dir = rt.dir;
      await Deno.writeTextFile(trigger, "");
      assertChecksPassed(t, [...MISC_CHECKS, "fd-above-nofile"], exitCode(await t.wait()));
    } finally {
      if (dir) await removeImageDir(dir);
      await Deno.remove(work, { recursive: true }).catch(() => {});
    }
  }),
);

Deno.test(
  "one image restores twice, each restored process running to completion",
  withTargets(async () => {
    const { t, trigger, work } = await startMisc();
    let dir: string | undefined;
    try {
      const pid = t.pid;
      const rt = await dumpKillRestore(t);
      dir = rt.dir;
      await Deno.writeTextFile(trigger, "");
      assertChecksPassed(t, MISC_CHECKS, exitCode(await t.wait()), 1);
      await Deno.remove(trigger);

      const again = await restore(dir);
      t.resetAfterRestore();
      assert.equal(again.rootPid, pid);
      await Deno.writeTextFile(trigger, "");
      assertChecksPassed(t, MISC_CHECKS, exitCode(await t.wait()), 2);
    } finally {
      if (dir) await removeImageDir(dir);
      await Deno.remove(work, { recursive: true }).catch(() => {});
    }
  }),
);

Deno.test(
  "a restored process can be checkpointed and restored again (C/R/C/R)",
  withTargets(async () => {
    const { t, trigger, work } = await startMisc();
    const files = await Deno.makeTempDir({ prefix: "cryo-rt-files-" });
    const filesTrigger = `${files}/go`;
    const dirs: string[] = [];
    try {
      const f = await startTarget("rt_files", [filesTrigger, files]);
      await f.waitFor(/^ready pid=/m);
      for (const target of [t, f]) {
        const pid = target.pid;
        for (let round = 0; round < 2; round++) {
          const rt = await dumpKillRestore(target);
          dirs.push(rt.dir);
          assert.equal(rt.tree.rootPid, pid, `round ${round + 1}`);
        }
      }
      // The second image was taken from a restored process: no bootstrap left in it.
      const second = await readImageFile(`${dirs[1]}/${t.pid}.elf`);
      const first = await readImageFile(`${dirs[0]}/${t.pid}.elf`);
      const layout = (i: typeof first) =>
        i.process.mappings.map((m) => `${m.start}-${m.end} ${m.perms} ${m.name}`);
      assert.deepEqual(layout(second), layout(first));

      await Deno.writeTextFile(trigger, "");
      await Deno.writeTextFile(filesTrigger, "");
      assertChecksPassed(t, MISC_CHECKS, exitCode(await t.wait()));
      assertChecksPassed(f, ["fd-set", "dup-shared", "append-writes"], exitCode(await f.wait()));
    } finally {
      for (const d of dirs) await removeImageDir(d);
      await Deno.remove(work, { recursive: true }).catch(() => {});
      await Deno.remove(files, { recursive: true }).catch(() => {});
    }
  }),
);

function procState(pid: number): { state: string; tracer: number } {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return {
    state: status.match(/^State:\s+(\S)/m)?.[1] ?? "?",
    tracer: Number(status.match(/^TracerPid:\s+(\d+)/m)?.[1] ?? -1),
  };
}

Deno.test(
  "leaveRunning: the target goes on undisturbed, and its image restores after it is gone",
  withTargets(async () => {
    const { t, trigger, work } = await startMisc();
    const dir = await tempImageDir();
    try {
      const pid = t.pid;
      await checkpoint(pid, { dir, leaveRunning: true });
      assert.equal(t.poll(), undefined, "the target died");
      await new Promise((r) => setTimeout(r, 100));
      const s = procState(pid);
      assert.equal(s.tracer, 0, "still traced after the dump");
      assert.match(s.state, /^[SR]$/, `state ${s.state} after the dump`);
      await Deno.writeTextFile(trigger, "");
      assertChecksPassed(t, MISC_CHECKS, exitCode(await t.wait()), 1);

      await Deno.remove(trigger);
      const rt = await restore(dir);
      t.resetAfterRestore();
      assert.equal(rt.rootPid, pid);
      await Deno.writeTextFile(trigger, "");
      assertChecksPassed(t, MISC_CHECKS, exitCode(await t.wait()), 2);
    } finally {
      await removeImageDir(dir);
      await Deno.remove(work, { recursive: true }).catch(() => {});
    }
  }),
);

Deno.test(
  "restore refuses a pid that is in use, creating nothing",
  withTargets(async () => {
    const { t, trigger, work } = await startMisc();
    const dir = await tempImageDir();
    try {
      await checkpoint(t.pid, { dir, leaveRunning: true });
      assert.ok(childPids().includes(t.pid), "childPids() does not see the target");
      await assertRestoreRefused(
        dir,
        RestoreError,
        new RegExp(`^cannot restore: pid ${t.pid} is in use by rt-misc-name$`),
      );
      assert.equal(t.poll(), undefined, "the running original died");
      // Once the original is gone, the same image restores.
      await t.kill();
      await restore(dir);
      t.resetAfterRestore();
      await Deno.writeTextFile(trigger, "");
      assertChecksPassed(t, MISC_CHECKS, exitCode(await t.wait()));
    } finally {
      await removeImageDir(dir);
      await Deno.remove(work, { recursive: true }).catch(() => {});
    }
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
    const { t, trigger, work } = await startMisc();
    const pid = t.pid;
    const dir = await tempImageDir();
    const copies: string[] = [];
    const variant = async (edit: (copy: string) => Promise<void>) => {
      const copy = await copyImage(dir);
      copies.push(copy);
      await edit(copy);
      return copy;
    };
    const elf = (d: string) => `${d}/${pid}.elf`;
    const editManifest = async (d: string, change: (m: Record<string, unknown>) => void) => {
      const m = JSON.parse(await Deno.readTextFile(`${d}/manifest.json`));
      change(m);
      await Deno.writeTextFile(`${d}/manifest.json`, JSON.stringify(m, null, 2));
    };
    try {
      await checkpoint(pid, { dir });
      await t.wait();
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

      // No manifest, or no image file.
      const noManifest = await variant((d) => Deno.remove(`${d}/manifest.json`));
      await assertRestoreRefused(noManifest, ImageFormatError, /no manifest\.json/);
      const noElf = await variant((d) => Deno.remove(elf(d)));
      await assertRestoreRefused(noElf, ImageFormatError, /missing/);

      // The pristine image still restores.
      await restore(dir);
      t.resetAfterRestore();
      await Deno.writeTextFile(trigger, "");
      assertChecksPassed(t, MISC_CHECKS, exitCode(await t.wait()));
    } finally {
      for (const c of copies) await removeImageDir(c);
      await removeImageDir(dir);
      await Deno.remove(work, { recursive: true }).catch(() => {});
    }
  }),
);

Deno.test(
  "restore refuses a backing file that is missing or changed since the dump",
  withTargets(async () => {
    const { t, trigger, work, ready } = await startMisc();
    const mapped = ready[3];
    const dir = await tempImageDir();
    try {
      await checkpoint(t.pid, { dir });
      await t.wait();
      const original = await Deno.readFile(mapped);
      const st = await Deno.stat(mapped);

      await Deno.rename(mapped, `${mapped}.away`);
      await assertRestoreRefused(
        dir,
        RestoreError,
        new RegExp(`^cannot restore: file mapped by ${t.pid} ${mapped} is missing$`),
      );
      await Deno.rename(`${mapped}.away`, mapped);

      // Same inode and size, other content (and so another mtime).
      const changed = original.slice();
      changed[10] ^= 0xff;
      await new Promise((r) => setTimeout(r, 20));
      await Deno.writeFile(mapped, changed);
      await assertRestoreRefused(
        dir,
        RestoreError,
        new RegExp(`^cannot restore: file mapped by ${t.pid} ${mapped} changed since the dump$`),
      );

      // Put the file back as it was (content and mtime): the image restores.
      await Deno.writeFile(mapped, original);
      await Deno.utime(mapped, st.atime!, st.mtime!);
      await restore(dir);
      t.resetAfterRestore();
      await Deno.writeTextFile(trigger, "");
      assertChecksPassed(t, MISC_CHECKS, exitCode(await t.wait()));
    } finally {
      await removeImageDir(dir);
      await Deno.remove(work, { recursive: true }).catch(() => {});
    }
  }),
);
