/**
 * Round trips of per-mapping and address-space memory state probed by
 * tests/targets/rt_memprobe.c, one mode per piece of state: the target
 * sets it, is dumped (killed) and restored, then checks itself (its areas'
 * maps lines and VmFlags, contents, and that the state still acts). A mode
 * this kernel or machine refuses at setup is reported as unavailable and
 * skipped with a message.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { restore } from "../engine/restore/mod.ts";
import { readImageFile } from "../engine/image/reader.ts";
import { lazyRegions } from "../engine/memory/lazy.ts";
import { vmFlagsPaths } from "../engine/dump/vm_flags.ts";
import { UnsupportedError } from "../engine/errors.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { assertOneLineError, runCli } from "./helpers/commands.ts";
import { pathExists } from "./helpers/fs.ts";
import { statusField } from "./helpers/proc.ts";
import { dumpKillRestore, startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { adoptPid, withTargets } from "./helpers/targets.ts";
import { withVmFlagsMode } from "./helpers/vmflags_mode.ts";

const READY = /^ready pid=(\d+)$/m;

/** Each mode and the checks it reports besides "maps". */
const ROUND_TRIPS: [string, string[]][] = [
  ["sealedfork", ["sealedfork-parent", "sealedfork-child"]],
  ["guard", ["guard-anon", "guard-file", "guard-shared", "guard-shared-file"]],
  ["madvise", ["madvise-contents", "madvise-fork"]],
  ["thp", ["thp-disable"]],
  ["thpexcept", ["thp-disable"]],
  ["ksm", ["ksm-merge", "ksm-contents"]],
  ["mlock", ["mlock-vmlck", "mlock-present", "mlock-contents"]],
  ["mlockall", ["mlockall-new-mapping", "mlockall-vmlck", "mlockall-contents"]],
  ["mlockallnow", ["mlockall-new-mapping", "mlockall-vmlck", "mlockall-contents"]],
  ["growsdown", ["growsdown-grows"]],
  ["noreserve", ["noreserve-contents"]],
  ["zeropage", ["zeropage-contents", "zeropage-rss"]],
  ["madvfree", ["madvfree-contents"]],
  ["protnone", ["protnone-contents", "protnone-faults", "protnone-reserved", "protnone-usable"]],
  ["bigreserve", ["bigreserve-contents", "bigreserve-rss"]],
  ["mremap", ["mremap-contents", "mremap-again"]],
  ["shared", [
    "shared-child-answers",
    "shared-pieces",
    "shared-child-exit",
    "shared-private-stays",
  ]],
  ["brk", ["brk-same", "brk-contents", "brk-grows"]],
  ["beyondeof", ["beyondeof-contents", "beyondeof-sigbus"]],
  ["filecow", ["filecow-contents", "filecow-follows-file"]],
  ["maywrite", ["maywrite-readonly-file", "maywrite-readwrite-file", "maywrite-private"]],
  ["hidden", ["hidden-contents"]],
  [
    "sealed",
    [
      "sealed-flag",
      "sealed-contents",
      "sealed-munmap",
      "sealed-mprotect",
      "sealed-readonly",
      "sealed-file",
    ],
  ],
  ["sharedgrow", ["sharedgrow-sigbus", "sharedgrow-split", "sharedgrow-one-object"]],
  // (Refused before: two views of one object at the same offsets; one object again now.)
  ["shareddup", ["shareddup"]],
  ["deletedtwice", ["deletedtwice-file", "deletedtwice-memfd"]],
  ["memfdseal", ["memfdseal-mprotect", "memfdseal-seals", "memfdseal-contents"]],
  ["fork", ["fork-parent", "fork-child"]],
  ["ksmfork", ["ksmfork-parent", "ksmfork-child"]],
  ["deletedcow", ["deletedcow"]],
  ["edges", ["edges"]],
  ["stack", ["stack-grows", "stack-name"]],
  ["brkempty", ["brk-same", "brk-grows"]],
  // (Refused before: restored with its huge pages now, engine/memory/hugetlb.ts.)
  ["hugetlb", ["hugetlb"]],
];

// Each mode with the VmFlags of smaps and of the BPF VMA iterator (engine/dump/vm_flags.ts).
for (const source of ["smaps", "bpf"] as const) {
  for (const [mode, checks] of ROUND_TRIPS) {
    Deno.test(
      `memory probe ${mode} (${source}): the state comes back after dump, kill and restore`,
      withTargets(() =>
        withVmFlagsMode(source, () =>
          withHugePages(mode, 1, async () => {
            const a = await startTriggered("rt_memprobe", READY, { passWork: true, extra: [mode] });
            await dumpKillRestore(a.t);
            assert.match(
              vmFlagsPaths.get(a.t.pid) ?? "",
              new RegExp(`^${source}`),
              "VmFlags source",
            );
            await Deno.writeTextFile(a.trigger, "");
            const status = await a.t.wait();
            const unavailable = new RegExp(`^info ${mode}=unavailable`, "m").test(a.t.output());
            if (unavailable) {
              console.log(`memory probe ${mode}: not available on this machine, not checked`);
            }
            assertChecksPassed(a.t, unavailable ? [] : ["maps", ...checks], status, {
              what: `rt_memprobe ${mode} (${source})`,
            });
          }))
      ),
    );
  }
}

/**
 * Modes the dump refuses: each refusal's text (after "process <pid> "), and
 * the checks the target passes afterwards (it runs on untouched).
 */
const REFUSED: [string, RegExp, string[]][] = [
  [
    "secret",
    /^mapping 0x[0-9a-f]+-0x[0-9a-f]+: memfd_secret areas and fds: no other process can read/,
    ["secret-contents", "secret-kind"],
  ],
  [
    "uffd-missing",
    /^mapping 0x[0-9a-f]+-0x[0-9a-f]+ \(anonymous\): .*: VmFlags um not re-created$/,
    ["uffd-flags"],
  ],
  [
    "uffd-wp",
    /^mapping 0x[0-9a-f]+-0x[0-9a-f]+ \(anonymous\): .*: VmFlags uw not re-created$/,
    ["uffd-flags"],
  ],
  [
    "sharedpast",
    /^mapping 0x[0-9a-f]+-0x[0-9a-f]+: shared anonymous mappings wholly past the end of their memory object/,
    ["sharedpast-sigbus"],
  ],
];

const NR_HUGEPAGES = "/proc/sys/vm/nr_hugepages";

/** Runs `fn` with `n` huge pages reserved when the mode needs them (the old count put back after). */
async function withHugePages<T>(mode: string, n: number, fn: () => Promise<T>): Promise<T> {
  if (mode !== "hugetlb") return fn();
  let old: string | undefined;
  try {
    old = Deno.readTextFileSync(NR_HUGEPAGES);
    if (Number(old) < n) Deno.writeTextFileSync(NR_HUGEPAGES, String(n));
  } catch (e) {
    console.log(`memory probe hugetlb: cannot reserve huge pages (${e}): the target says so`);
    old = undefined;
  }
  try {
    return await fn();
  } finally {
    if (old !== undefined) Deno.writeTextFileSync(NR_HUGEPAGES, old);
  }
}

for (const source of ["smaps", "bpf"] as const) {
  for (const [mode, refusal, checks] of REFUSED) {
    Deno.test(
      `memory probe ${mode} (${source}): refused at dump by name, no image left, the target runs on untouched`,
      withTargets(() =>
        withVmFlagsMode(source, () =>
          withHugePages(mode, 2, async () => {
            const a = await startTriggered("rt_memprobe", READY, { passWork: true, extra: [mode] });
            const holder = a.t.output().match(/^info holder=(\d+)$/m);
            if (holder) adoptPid(Number(holder[1]));
            const unavailable = new RegExp(`^info ${mode}=unavailable`, "m").test(a.t.output());
            if (unavailable) {
              console.log(`memory probe ${mode}: not available on this machine, not checked`);
              await Deno.writeTextFile(a.trigger, "");
              return assertChecksPassed(a.t, [], await a.t.wait());
            }
            const dir = await tempImageDir();
            await assert.rejects(checkpoint(a.t.pid, { dir }), (e: unknown) => {
              assert.ok(e instanceof UnsupportedError, `expected UnsupportedError, got ${e}`);
              assert.equal(e.items.length, 1, e.message);
              const prefix = `process ${a.t.pid} `;
              assert.ok(e.items[0].startsWith(prefix), e.items[0]);
              assert.match(e.items[0].slice(prefix.length), refusal);
              return true;
            });
            assert.equal(pathExists(dir), false, "the refused dump left an image");
            assert.match(
              vmFlagsPaths.get(a.t.pid) ?? "",
              new RegExp(`^${source}`),
              "VmFlags source",
            );
            assert.equal(statusField(a.t.pid, "TracerPid"), "0");
            await Deno.writeTextFile(a.trigger, "");
            assertChecksPassed(a.t, ["maps", ...checks], await a.t.wait(), {
              what: `rt_memprobe ${mode} after the refusal (${source})`,
            });
          }))
      ),
    );
  }
}

Deno.test(
  "memory probe secretfd: the CLI refuses a memfd_secret fd in one line, no image left",
  withTargets(async () => {
    const a = await startTriggered("rt_memprobe", READY, { passWork: true, extra: ["secretfd"] });
    if (/^info secretfd=unavailable/m.test(a.t.output())) {
      console.log("memory probe secretfd: not available on this machine, not checked");
      await Deno.writeTextFile(a.trigger, "");
      return assertChecksPassed(a.t, [], await a.t.wait());
    }
    const dir = await tempImageDir();
    const r = await runCli(["dump", String(a.t.pid), "--dir", dir]);
    assertOneLineError(r, 1, /memfd_secret areas and fds/, "dump of a memfd_secret fd");
    assert.equal(pathExists(dir), false, "the refused dump left an image");
    await Deno.writeTextFile(a.trigger, "");
    assertChecksPassed(a.t, ["maps", "secret-contents", "secret-kind"], await a.t.wait());
  }),
);

Deno.test(
  "memory probe sealed: a lazy restore serves sealed mappings (sealed by the engine after the program) and keeps read-only areas accounted",
  withTargets(async () => {
    const a = await startTriggered("rt_memprobe", READY, { passWork: true, extra: ["sealed"] });
    const dir = await tempImageDir();
    await checkpoint(a.t.pid, { dir });
    await a.t.wait();
    const { process } = await readImageFile(`${dir}/${a.t.pid}.elf`);
    const sealed = process.mappings.filter((m) => m.vmFlags.includes("sl")).map((m) => m.start);
    const served = lazyRegions(process).map((r) => `0x${r.start.toString(16)}`);
    assert.ok(sealed.some((s) => served.includes(s)), `no sealed area served: ${sealed} ${served}`);
    const tree = await restore(dir, { lazy: true });
    a.t.resetAfterRestore();
    assert.ok(tree.lazy, "the restore is lazy");
    tree.lazy?.serve();
    await Deno.writeTextFile(a.trigger, "");
    assertChecksPassed(
      a.t,
      ["maps", "sealed-flag", "sealed-contents", "sealed-readonly"],
      await a.t.wait(),
    );
    assert.equal(tree.lazy?.failure, undefined);
  }),
);

/** Modes whose anonymous areas a lazy restore serves (locked ones it loads at once). */
const LAZY_MODES = ["hidden", "madvise", "guard", "mremap", "protnone", "madvfree", "fork"];

for (const mode of LAZY_MODES) {
  Deno.test(
    `memory probe ${mode} (lazy): the state comes back after a lazy restore`,
    withTargets(async () => {
      const a = await startTriggered("rt_memprobe", READY, { passWork: true, extra: [mode] });
      const dir = await tempImageDir();
      await checkpoint(a.t.pid, { dir });
      await a.t.wait();
      const tree = await restore(dir, { lazy: true });
      a.t.resetAfterRestore();
      for (const pid of tree.pids) if (pid !== a.t.pid) adoptPid(pid);
      assert.ok(tree.lazy, "the restore is lazy");
      tree.lazy.serve();
      await Deno.writeTextFile(a.trigger, "");
      const checks = ROUND_TRIPS.find(([m]) => m === mode)![1];
      assertChecksPassed(a.t, ["maps", ...checks], await a.t.wait(), {
        what: `rt_memprobe ${mode} (lazy)`,
      });
      assert.equal(tree.lazy.failure, undefined);
    }),
  );
}
