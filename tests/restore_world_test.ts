/**
 * Restores after the world changed between dump and restore
 * (tests/targets/rt_world.c): a file an fd or a mapping holds was
 * modified, replaced, removed or retyped, a directory moved, a device node
 * swapped. Each restore must either bring back exactly the recorded state
 * (the target checks it) or refuse with one line naming what changed,
 * leaving the image intact and no process behind.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { RestoreError } from "../engine/errors.ts";
import { restore } from "../engine/restore/mod.ts";
import { tempImageDir } from "./helpers/roundtrip.ts";
import { adoptPid, buildTarget, startTarget, withTargets } from "./helpers/targets.ts";
import { pathExists, tempDir } from "./helpers/fs.ts";

const READY = /^ready (\d+)$/m;

/** What a restore after `change` did: refused (the message) or restored (the target's report). */
type Outcome = { refused: string } | { restored: string };

/** How a probe starts rt_world: from a copy in its work directory, under another uid. */
interface Start {
  /** Run a copy of the executable at `<work>/rt_world` (the case may change it). */
  exeCopy?: boolean;
  /** Run it as this uid and gid (setpriv), no groups. */
  uid?: number;
}

/** Starts rt_world in `mode`, dumps it (killed), runs `change(work)`, restores; the outcome. */
async function probe(
  mode: string,
  change: (work: string, dir: string) => Promise<void> | void,
  start: Start = {},
): Promise<Outcome> {
  const work = await tempDir("cryo-rt-world-");
  Deno.chmodSync(work, 0o755);
  const trigger = mode === "root" ? `${work}/r/go` : `${work}/go`;
  let exe = await buildTarget("rt_world");
  if (start.exeCopy) {
    Deno.copyFileSync(exe, `${work}/rt_world`);
    exe = `${work}/rt_world`;
  }
  const args = [exe, trigger, work, mode];
  const t = start.uid === undefined
    ? await startTarget(exe, args.slice(1))
    : await startTarget("/usr/bin/setpriv", [
      `--reuid=${start.uid}`,
      `--regid=${start.uid}`,
      "--clear-groups",
      ...args,
    ]);
  assert.equal(Number((await t.waitFor(READY))[1]), t.pid);
  const uidLine = () => Deno.readTextFileSync(`/proc/${t.pid}/status`).match(/^Uid:.*$/m)?.[0];
  const uidBefore = uidLine();
  const dir = await tempImageDir();
  await checkpoint(t.pid, { dir });
  await t.wait();
  await change(work, dir);
  const before = imageListing(dir);
  let tree;
  try {
    tree = await restore(dir);
  } catch (e) {
    // (The work directory a case moved away is not withTargets' to remove.)
    if (pathExists(`${work}.moved`)) Deno.removeSync(`${work}.moved`, { recursive: true });
    if (!(e instanceof RestoreError)) throw e;
    assert.equal(Deno.readDirSync(`/proc`).some((p) => p.name === String(t.pid)), false);
    assert.deepEqual(imageListing(dir), before, "the image is left as it was");
    return { refused: e.message };
  }
  t.resetAfterRestore();
  for (const pid of tree.pids) if (pid !== t.pid) adoptPid(pid);
  assert.equal(uidLine(), uidBefore, "the same uids");
  await Deno.writeTextFile(trigger, "");
  await t.wait();
  return { restored: t.output().split("\n").filter((l) => / FAIL|^PASS|^FAIL/.test(l)).join("; ") };
}

/** Names and sizes of the image's files. */
function imageListing(dir: string): string {
  return [...Deno.readDirSync(dir)].map((e) =>
    `${e.name}:${Deno.statSync(`${dir}/${e.name}`).size}`
  )
    .sort().join(" ");
}

/** Runs a command, throwing with its stderr when it fails. */
const run = (cmd: string, ...args: string[]) => {
  const r = new Deno.Command(cmd, { args }).outputSync();
  if (!r.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(r.stderr)}`);
  }
};

/**
 * What a case must end in: refused with a message matching the pattern, or
 * restored with exactly these of the target's checks failing (none: a
 * faithful restore; the content of a file an fd holds is not the fd's
 * state: it may change, as under a running process).
 */
type Expect = RegExp | string[];

const REPLACED_FILE =
  /^cannot restore: fd 3 of process \d+: \S+\/f\.bin was replaced by another file since the dump \(--inherit-fd 3=\S+ takes it as it is now\)$/;
const MISSING_FD =
  /^cannot restore: fd 3 of process \d+ was \S+, which is missing \(use --inherit-fd 3=PATH\)$/;
const CHANGED_MAPPED = /^cannot restore: file mapped by \d+ \S+\/p\.bin changed since the dump/;

/** Every probed case: mode, what changes, the change, what must come of it. */
const CASES: [
  string,
  string,
  (work: string, dir: string) => Promise<void> | void,
  Expect,
  Start?,
][] = [
  ["fd", "unchanged", () => {}, []],
  ["fd", "modified", (w) => Deno.writeFileSync(`${w}/f.bin`, new Uint8Array(8192).fill(65)), [
    "content",
  ]],
  ["fd", "truncated", (w) => Deno.truncateSync(`${w}/f.bin`, 10), ["size", "content"]],
  ["fd", "extended", (w) => Deno.writeTextFileSync(`${w}/f.bin`, "more", { append: true }), [
    "size",
  ]],
  ["fd", "replaced", (w) => {
    Deno.writeTextFileSync(`${w}/new`, "x");
    Deno.renameSync(`${w}/new`, `${w}/f.bin`);
  }, REPLACED_FILE],
  ["fd", "deleted", (w) => Deno.removeSync(`${w}/f.bin`), MISSING_FD],
  ["fd", "chmod000", (w) => Deno.chmodSync(`${w}/f.bin`, 0), []],
  [
    "fd",
    "now-dir",
    (w) => {
      Deno.removeSync(`${w}/f.bin`);
      Deno.mkdirSync(`${w}/f.bin`);
    },
    /^cannot restore: fd 3 of process \d+: \S+\/f\.bin is no longer a regular file \(--inherit-fd/,
  ],
  ["fd", "parent-renamed", (w) => Deno.renameSync(w, `${w}.moved`), MISSING_FD],
  ["private", "unchanged", () => {}, []],
  [
    "private",
    "modified",
    (w) => Deno.writeFileSync(`${w}/p.bin`, new Uint8Array(3 * 4096).fill(66)),
    CHANGED_MAPPED,
  ],
  [
    "private",
    "modified-same-mtime",
    (w) => {
      const m = Deno.statSync(`${w}/p.bin`).mtime!;
      Deno.writeFileSync(`${w}/p.bin`, new Uint8Array(3 * 4096).fill(66));
      Deno.utimeSync(`${w}/p.bin`, m, m);
    },
    /^cannot restore: file mapped by \d+ \S+\/p\.bin changed since the dump \(its change time moved/,
  ],
  ["private", "chmod", (w) => Deno.chmodSync(`${w}/p.bin`, 0o600), CHANGED_MAPPED],
  ["private", "replaced-same-size", (w) => {
    Deno.writeFileSync(`${w}/n`, new Uint8Array(3 * 4096).fill(66));
    Deno.renameSync(`${w}/n`, `${w}/p.bin`);
  }, /^cannot restore: file mapped by \d+ \S+\/p\.bin is another file than at the dump$/],
  [
    "private",
    "deleted",
    (w) => Deno.removeSync(`${w}/p.bin`),
    /^cannot restore: file mapped by \d+ \S+\/p\.bin is missing$/,
  ],
  ["shared", "unchanged", () => {}, []],
  // Shared file memory is the file's: written by others since, it is what the process sees.
  [
    "shared",
    "modified",
    (w) => Deno.writeFileSync(`${w}/s.bin`, new Uint8Array(4096).fill(67)),
    [],
  ],
  ["shared", "replaced", (w) => {
    Deno.writeFileSync(`${w}/n`, new Uint8Array(4096).fill(67));
    Deno.renameSync(`${w}/n`, `${w}/s.bin`);
  }, /^cannot restore: file mapped by \d+ \S+\/s\.bin is another file than at the dump$/],
  ["cwd", "unchanged", () => {}, []],
  [
    "cwd",
    "removed",
    (w) => Deno.removeSync(`${w}/d`),
    /^cannot restore: the cwd of process \d+, \S+\/d, is missing$/,
  ],
  [
    "cwd",
    "renamed",
    (w) => Deno.renameSync(`${w}/d`, `${w}/e`),
    /^cannot restore: the cwd of process \d+, \S+\/d, is missing$/,
  ],
  [
    "cwd",
    "replaced",
    (w) => {
      Deno.renameSync(`${w}/d`, `${w}/e`);
      Deno.mkdirSync(`${w}/d`);
    },
    /^cannot restore: the cwd of process \d+, \S+\/d, was replaced by another directory since the dump$/,
  ],
  ["cwd", "now-file", (w) => {
    Deno.removeSync(`${w}/d`);
    Deno.writeTextFileSync(`${w}/d`, "x");
  }, /^cannot restore: the cwd of process \d+, \S+\/d, is no longer a directory$/],
  ["root", "unchanged", () => {}, []],
  [
    "root",
    "removed",
    (w) => Deno.removeSync(`${w}/r`),
    /^cannot restore: the root of process \d+, \S+\/r, is missing$/,
  ],
  [
    "root",
    "replaced",
    (w) => {
      Deno.renameSync(`${w}/r`, `${w}/r2`);
      Deno.mkdirSync(`${w}/r`);
    },
    /^cannot restore: the root of process \d+, \S+\/r, was replaced by another directory since the dump$/,
  ],
  ["dirfd", "unchanged", () => {}, []],
  [
    "dirfd",
    "replaced",
    (w) => {
      Deno.renameSync(`${w}/d`, `${w}/e`);
      Deno.mkdirSync(`${w}/d`);
    },
    /^cannot restore: fd 3 of process \d+: \S+\/d was replaced by another directory since the dump/,
  ],
  ["dirfd", "now-file", (w) => {
    Deno.removeSync(`${w}/d`);
    Deno.writeTextFileSync(`${w}/d`, "x");
  }, /^cannot restore: fd 3 of process \d+: \S+\/d is no longer a directory/],
  ["dev", "unchanged", () => {}, []],
  // Another node of the same device opens the same device: taken, though fstat shows another
  // inode (/dev is made anew at each boot, a device fd must survive that).
  ["dev", "same-device-new-node", (w) => {
    run("mknod", `${w}/nul2`, "c", "1", "3");
    Deno.renameSync(`${w}/nul2`, `${w}/nul`);
  }, ["same-inode"]],
  ["dev", "other-device", (w) => {
    run("mknod", `${w}/nul2`, "c", "1", "5");
    Deno.renameSync(`${w}/nul2`, `${w}/nul`);
  }, /^cannot restore: fd 3 of process \d+: \S+\/nul is now device 1:5, not 1:3/],
  ["dev", "now-file", (w) => {
    Deno.writeTextFileSync(`${w}/nul2`, "x");
    Deno.renameSync(`${w}/nul2`, `${w}/nul`);
  }, /^cannot restore: fd 3 of process \d+: \S+\/nul is no longer a character device/],
  ["fifo", "unchanged", () => {}, []],
  ["fifo", "now-file", (w) => {
    Deno.writeTextFileSync(`${w}/f2`, "x");
    Deno.renameSync(`${w}/f2`, `${w}/fifo`);
  }, /^cannot restore: fd 3 of process \d+: \S+\/fifo is no longer a FIFO$/],
  ["fifo", "other-fifo", (w) => {
    run("mkfifo", `${w}/f2`);
    Deno.renameSync(`${w}/f2`, `${w}/fifo`);
  }, /^cannot restore: fd 3 of process \d+: \S+\/fifo was replaced by another file since the dump/],
  [
    "fifo",
    "removed",
    (w) => Deno.removeSync(`${w}/fifo`),
    /^cannot restore: fd 3 of process \d+ was \S+\/fifo, which is missing/,
  ],
  ["plain", "exe unchanged", () => {}, [], { exeCopy: true }],
  [
    "plain",
    "exe rewritten in place",
    (w) => {
      const b = Deno.readFileSync(`${w}/rt_world`);
      b[b.length - 1] ^= 1;
      Deno.writeFileSync(`${w}/rt_world`, b);
    },
    /^cannot restore: executable of \d+ \S+\/rt_world changed since the dump$/,
    { exeCopy: true },
  ],
  [
    "plain",
    "exe rebuilt with its old mtime",
    (w) => {
      const m = Deno.statSync(`${w}/rt_world`).mtime!;
      const b = Deno.readFileSync(`${w}/rt_world`);
      b[b.length - 1] ^= 1;
      Deno.writeFileSync(`${w}/rt_world`, b);
      Deno.utimeSync(`${w}/rt_world`, m, m);
    },
    /^cannot restore: executable of \d+ \S+\/rt_world changed since the dump \(its change time moved/,
    {
      exeCopy: true,
    },
  ],
  [
    "plain",
    "exe replaced",
    (w) => {
      Deno.copyFileSync(`${w}/rt_world`, `${w}/n`);
      Deno.renameSync(`${w}/n`, `${w}/rt_world`);
    },
    /^cannot restore: executable of \d+ \S+\/rt_world is another file than at the dump$/,
    {
      exeCopy: true,
    },
  ],
  // Numeric ids are what a process has: a uid with no passwd entry comes back as it was.
  ["plain", "uid without a passwd entry", () => {}, [], { uid: 54321 }],
  ["unix", "unchanged", () => {}, []],
  // The socket file is made again at its path.
  ["unix", "path-removed", (w) => Deno.removeSync(`${w}/sock`), []],
  ["unix", "path-now-file", (w) => {
    Deno.removeSync(`${w}/sock`);
    Deno.writeTextFileSync(`${w}/sock`, "x");
  }, /^cannot restore: \S+\/sock \(process \d+ fd 3\) exists and is not a socket file$/],
];

for (const [mode, what, change, expect, start] of CASES) {
  Deno.test(
    `world changed before restore: ${mode} ${what}: ${
      expect instanceof RegExp
        ? "refused"
        : expect.length
        ? `restored (${expect.join(", ")} differ)`
        : "restored as dumped"
    }`,
    withTargets(async () => {
      const out = await probe(mode, change, start);
      if (expect instanceof RegExp) {
        assert.ok("refused" in out, `restored: ${"restored" in out ? out.restored : ""}`);
        assert.match(out.refused, expect);
      } else {
        assert.ok("restored" in out, `refused: ${"refused" in out ? out.refused : ""}`);
        const failed = [...out.restored.matchAll(/check (\S+) FAIL/g)].map((m) => m[1]);
        assert.deepEqual(failed, expect, out.restored);
        assert.equal(out.restored.endsWith(expect.length ? "FAIL" : "PASS"), true, out.restored);
      }
    }),
  );
}

if (Deno.env.get("CRYO_WORLD_REPORT")) {
  Deno.test(
    "report: restore after the world changed",
    withTargets(async () => {
      const only = Deno.env.get("CRYO_WORLD_REPORT");
      for (const [mode, what, change] of CASES) {
        if (only !== "all" && !`${mode}/${what}`.includes(only!)) continue;
        let out: string;
        try {
          out = JSON.stringify(await probe(mode, change));
        } catch (e) {
          out = `ERROR ${e instanceof Error ? e.message : e}`;
        }
        console.log(`WORLD ${mode}/${what}: ${out}`);
      }
    }),
  );
}

Deno.test(
  "image changed before restore: a process file from another dump of it is refused by its dump id (with --no-verify too), a symlinked file by name",
  withTargets(async () => {
    const work = await tempDir("cryo-rt-world-");
    const t = await startTarget("rt_world", [`${work}/go`, work, "plain"]);
    assert.equal(Number((await t.waitFor(READY))[1]), t.pid);
    const first = await tempImageDir();
    await checkpoint(t.pid, { dir: first, leaveRunning: true });
    await new Promise((r) => setTimeout(r, 100)); // other times, registers: another file
    const second = await tempImageDir();
    await checkpoint(t.pid, { dir: second });
    await t.wait();
    const elf = `${t.pid}.elf`;
    const variant = async (edit: (d: string) => void, verifyChecksums = true) => {
      const d = await tempImageDir();
      Deno.mkdirSync(d, { mode: 0o700 });
      for (const e of Deno.readDirSync(second)) {
        Deno.copyFileSync(`${second}/${e.name}`, `${d}/${e.name}`);
      }
      edit(d);
      const before = imageListing(d);
      const err = await restore(d, { verifyChecksums }).then((tree) => {
        for (const pid of tree.pids) adoptPid(pid); // (killed at the end of the test)
        return undefined;
      }, (e) => e);
      assert.ok(err instanceof Error, "restored");
      assert.ok(!pathExists(`/proc/${t.pid}`), "nothing left running");
      assert.equal(imageListing(d), before, "the image is left as it was");
      return err.message as string;
    };
    // Named by the dump ids before the checksums are read; with --no-verify too.
    const otherDump = new RegExp(
      `^cannot restore: ${elf} was written by another dump \\([\\w-]+\\) than the manifest \\([\\w-]+\\)$`,
    );
    const copyFirst = (d: string) => {
      Deno.copyFileSync(`${first}/${elf}`, `${d}/${elf}`);
      // The two dumps' files may differ in size (their notes): the manifest is given the copy's
      // size, so that what refuses it is the dump id, not the size check before it.
      const m = JSON.parse(Deno.readTextFileSync(`${d}/manifest.json`));
      for (const p of m.processes) if (p.file === elf) p.size = Deno.statSync(`${d}/${elf}`).size;
      Deno.writeTextFileSync(`${d}/manifest.json`, JSON.stringify(m));
    };
    assert.match(await variant(copyFirst), otherDump);
    assert.match(await variant(copyFirst, false), otherDump);
    const linked = await variant((d) => {
      Deno.removeSync(`${d}/${elf}`);
      Deno.symlinkSync(`${second}/${elf}`, `${d}/${elf}`);
    });
    assert.match(
      linked,
      new RegExp(
        `^cannot restore: \\S+/${elf} is a symbolic link to \\S+/${elf}, not a file of the dump; restore it only if you trust`,
      ),
    );
  }),
);
