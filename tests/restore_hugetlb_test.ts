/**
 * Round trips of huge page (hugetlb) memory (engine/memory/hugetlb.ts) with
 * tests/targets/rt_hugetlb.c: private and shared anonymous MAP_HUGETLB
 * areas come back at their addresses, still hugetlb (2 MiB pages), with
 * their contents; a shared one is one object of the parent and its child
 * again. A restore host with too few free huge pages is refused before any
 * process is made, by name with the count.
 *
 * The test reserves the huge pages it needs (/proc/sys/vm/nr_hugepages,
 * the old count put back after); a kernel that gives none makes the target
 * say so, and the case is not checked.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { restore } from "../engine/restore/mod.ts";
import { RestoreError } from "../engine/errors.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { dumpKillRestore, startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { adoptPid, withTargets } from "./helpers/targets.ts";
import { readImageFile } from "../engine/image/reader.ts";
import type { GhostFile } from "../engine/model.ts";

const READY = /^ready pid=(\d+)$/m;
const NR_HUGEPAGES = "/proc/sys/vm/nr_hugepages";

/**
 * Runs `fn` with `n` more 2 MiB huge pages in the host's pool (the old
 * count put back after); false when it cannot be set so.
 */
async function withHugePages<T>(n: number, fn: (reserved: boolean) => Promise<T>): Promise<T> {
  let old: string | undefined;
  try {
    old = Deno.readTextFileSync(NR_HUGEPAGES);
    // (On top of what the host has: another program may hold some.)
    Deno.writeTextFileSync(NR_HUGEPAGES, String(Number(old) + n));
  } catch (e) {
    console.log(`hugetlb: cannot reserve huge pages (${e})`);
    old = undefined;
  }
  try {
    return await fn(old !== undefined);
  } finally {
    if (old !== undefined) Deno.writeTextFileSync(NR_HUGEPAGES, old);
  }
}

/** Each mode, the huge pages it needs (dump and restore) and the checks it reports. */
const MODES: [string, number, string[]][] = [
  ["private", 3, ["private-contents", "private-hugetlb", "private-untouched"]],
  ["shared", 2, [
    "shared-contents",
    "shared-hugetlb",
    "shared-child-sees",
    "shared-parent-sees",
    "shared-child-exit",
  ]],
  ["memfd", 8, [
    "memfd-mapped-contents",
    "memfd-fd-contents",
    "memfd-hugetlbfs",
    "memfd-mapping-hugetlb",
    "memfd-mapping-shared",
  ]],
];

for (const [mode, pages, checks] of MODES) {
  Deno.test(
    `hugetlb ${mode}: MAP_HUGETLB memory restored at its address, hugetlb, with its contents`,
    withTargets(() =>
      withHugePages(pages, async () => {
        const a = await startTriggered("rt_hugetlb", READY, { extra: [mode] });
        const child = a.t.output().match(/^info child=(\d+)$/m);
        if (child) adoptPid(Number(child[1]));
        if (/^info hugetlb=unavailable/m.test(a.t.output())) {
          console.log(`hugetlb ${mode}: no huge pages on this machine, not checked`);
          await Deno.writeTextFile(a.trigger, "");
          return assertChecksPassed(a.t, [], await a.t.wait());
        }
        const { dir, tree } = await dumpKillRestore(a.t);
        for (const pid of tree.pids) adoptPid(pid);
        const { process } = await readImageFile(`${dir}/${a.t.pid}.elf`);
        const huge = process.mappings.filter((m) => m.hugePageSize);
        assert.ok(huge.length >= 1, "no mapping recorded with its huge page size");
        assert.equal(huge[0].hugePageSize, 2 << 20);
        if (mode === "memfd") {
          const manifest = JSON.parse(await Deno.readTextFile(`${dir}/manifest.json`));
          const sizes = (manifest.ghosts ?? []).map((g: GhostFile) => g.hugePageSize);
          assert.deepEqual(sizes, [2 << 20, 2 << 20], "the memfds' huge page sizes");
        }
        await Deno.writeTextFile(a.trigger, "");
        assertChecksPassed(a.t, checks, await a.t.wait(), { what: `rt_hugetlb ${mode}` });
      })
    ),
  );
}

Deno.test(
  "hugetlb: a restore host with too few free huge pages is refused by name before any process is made",
  withTargets(() =>
    withHugePages(3, async (reserved) => {
      const a = await startTriggered("rt_hugetlb", READY, { extra: ["private"] });
      if (!reserved || /^info hugetlb=unavailable/m.test(a.t.output())) {
        console.log("hugetlb refusal: no huge pages on this machine, not checked");
        await Deno.writeTextFile(a.trigger, "");
        return assertChecksPassed(a.t, [], await a.t.wait());
      }
      const dir = await tempImageDir();
      await checkpoint(a.t.pid, { dir });
      await a.t.wait();
      const base = Number(Deno.readTextFileSync(NR_HUGEPAGES)) - 3;
      Deno.writeTextFileSync(NR_HUGEPAGES, String(base + 1));
      await assert.rejects(restore(dir), (e: unknown) => {
        assert.ok(e instanceof RestoreError, `expected RestoreError, got ${e}`);
        assert.match(
          e.message,
          /hugetlb memory: the images map 3 huge page\(s\) of 2 MiB, this host has [0-2] free/,
        );
        return true;
      });
      assert.throws(() => Deno.readTextFileSync(`/proc/${a.t.pid}/stat`), "a process was made");
    })
  ),
);

Deno.test(
  "hugetlb private after a pre-dump: the final dump of the chain saves the huge pages, restored exactly",
  withTargets(() =>
    withHugePages(3, async () => {
      const a = await startTriggered("rt_hugetlb", READY, { extra: ["private"] });
      if (/^info hugetlb=unavailable/m.test(a.t.output())) {
        console.log("hugetlb pre-dump: no huge pages on this machine, not checked");
        await Deno.writeTextFile(a.trigger, "");
        return assertChecksPassed(a.t, [], await a.t.wait());
      }
      const pre = await tempImageDir();
      await checkpoint(a.t.pid, { dir: pre, preDump: true });
      const dir = await tempImageDir();
      await checkpoint(a.t.pid, { dir, parent: pre });
      await a.t.wait();
      const tree = await restore(dir);
      a.t.resetAfterRestore();
      for (const pid of tree.pids) adoptPid(pid);
      await Deno.writeTextFile(a.trigger, "");
      assertChecksPassed(
        a.t,
        ["private-contents", "private-hugetlb", "private-untouched"],
        await a.t.wait(),
        { what: "rt_hugetlb private after a pre-dump" },
      );
    })
  ),
);

for (const mode of ["file", "deleted"]) {
  Deno.test(
    mode === "file"
      ? "hugetlb file of a hugetlbfs mount: its shared and private mappings restored hugetlb, with their contents"
      : "hugetlb file of a hugetlbfs mount removed before the dump: made again there (removed), its fd and mappings hugetlb with their contents",
    withTargets(() =>
      withHugePages(8, async () => {
        const mnt = await Deno.makeTempDir({ prefix: "cryo-hugetlbfs-" });
        const mount = await new Deno.Command("mount", { args: ["-t", "hugetlbfs", "none", mnt] })
          .output();
        let a: Awaited<ReturnType<typeof startTriggered>> | undefined;
        try {
          if (!mount.success) {
            console.log("hugetlb file: cannot mount hugetlbfs here, not checked");
            return;
          }
          a = await startTriggered("rt_hugetlb", READY, { extra: [mode, mnt] });
          if (/^info hugetlb=unavailable/m.test(a.t.output())) {
            console.log("hugetlb file: no huge pages on this machine, not checked");
            await Deno.writeTextFile(a.trigger, "");
            return assertChecksPassed(a.t, [], await a.t.wait());
          }
          await dumpKillRestore(a.t);
          await Deno.writeTextFile(a.trigger, "");
          assertChecksPassed(
            a.t,
            [
              "file-shared-contents",
              "file-private-contents",
              "file-hugetlb",
              "file-shared-follows",
              ...(mode === "deleted" ? ["file-deleted"] : []),
            ],
            await a.t.wait(),
            { what: `rt_hugetlb ${mode}` },
          );
        } finally {
          await a?.t.kill(); // (it holds the mount busy)
          if (mount.success) await new Deno.Command("umount", { args: [mnt] }).output();
          await Deno.remove(mnt, { recursive: true }).catch(() => {});
        }
      })
    ),
  );
}

Deno.test(
  "hugetlb deleted file: a restore whose directory is no hugetlbfs mount any more is refused in one line",
  withTargets(() =>
    withHugePages(8, async () => {
      const mnt = await Deno.makeTempDir({ prefix: "cryo-hugetlbfs-" });
      const mount = await new Deno.Command("mount", { args: ["-t", "hugetlbfs", "none", mnt] })
        .output();
      let mounted = mount.success;
      let a: Awaited<ReturnType<typeof startTriggered>> | undefined;
      try {
        if (!mounted) {
          console.log("hugetlb deleted: cannot mount hugetlbfs here, not checked");
          return;
        }
        a = await startTriggered("rt_hugetlb", READY, { extra: ["deleted", mnt] });
        if (/^info hugetlb=unavailable/m.test(a.t.output())) {
          console.log("hugetlb deleted: no huge pages on this machine, not checked");
          await Deno.writeTextFile(a.trigger, "");
          return assertChecksPassed(a.t, [], await a.t.wait());
        }
        const dir = await tempImageDir();
        await checkpoint(a.t.pid, { dir });
        await a.t.wait();
        // The directory is a plain one of the host's file system now.
        await new Deno.Command("umount", { args: [mnt] }).output();
        mounted = false;
        await assert.rejects(() => restore(dir), (e: Error) => {
          assert.ok(e instanceof RestoreError, String(e));
          assert.match(e.message, /2097152-byte huge pages: the file made there has pages of 4096/);
          return true;
        });
      } finally {
        await a?.t.kill();
        if (mounted) await new Deno.Command("umount", { args: [mnt] }).output();
        await Deno.remove(mnt, { recursive: true }).catch(() => {});
      }
    })
  ),
);
