/**
 * Round trips of per-mapping and address-space memory state probed by
 * tests/targets/rt_memprobe.c, one mode per piece of state: the target
 * sets it, is dumped (killed) and restored, then checks itself (its areas'
 * maps lines and VmFlags, contents, and that the state still acts). A mode
 * this kernel or machine refuses at setup is reported as unavailable and
 * skipped with a message.
 */

import { assertChecksPassed } from "./helpers/checks.ts";
import { dumpKillRestore, startTriggered } from "./helpers/roundtrip.ts";
import { adoptPid, withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+)$/m;

/** Each mode and the checks it reports besides "maps". */
const ROUND_TRIPS: [string, string[]][] = [
  ["guard", ["guard-anon", "guard-file", "guard-shared"]],
  ["madvise", ["madvise-contents", "madvise-fork"]],
  ["thp", ["thp-disable"]],
  ["thpexcept", ["thp-disable"]],
  ["ksm", ["ksm-merge", "ksm-contents"]],
  ["mlock", ["mlock-vmlck", "mlock-present", "mlock-contents"]],
  ["mlockall", ["mlockall-new-mapping", "mlockall-vmlck", "mlockall-contents"]],
  ["mlockallnow", ["mlockall-new-mapping", "mlockall-vmlck", "mlockall-contents"]],
  ["growsdown", ["growsdown-grows"]],
  ["noreserve", ["noreserve-contents"]],
  ["madvfree", ["madvfree-contents"]],
  ["protnone", ["protnone-contents", "protnone-faults", "protnone-reserved", "protnone-usable"]],
  ["mremap", ["mremap-contents", "mremap-again"]],
  ["shared", ["shared-child-answers", "shared-child-exit", "shared-private-stays"]],
  ["brk", ["brk-same", "brk-contents", "brk-grows"]],
  ["beyondeof", ["beyondeof-contents", "beyondeof-sigbus"]],
  ["filecow", ["filecow-contents", "filecow-follows-file"]],
  ["maywrite", ["maywrite-readonly-file", "maywrite-readwrite-file", "maywrite-private"]],
  ["hidden", ["hidden-contents"]],
  ["sharedgrow", ["sharedgrow-sigbus", "sharedgrow-split"]],
  ["shareddup", ["shareddup"]],
  ["deletedtwice", ["deletedtwice-file", "deletedtwice-memfd"]],
  ["memfdseal", ["memfdseal-mprotect", "memfdseal-seals", "memfdseal-contents"]],
  ["stack", ["stack-grows", "stack-name"]],
  ["brkempty", ["brk-same", "brk-grows"]],
  ["sealed", ["sealed-flag", "sealed-contents", "sealed-munmap", "sealed-mprotect"]],
  ["secret", ["secret-contents", "secret-kind"]],
  ["uffd-missing", ["uffd-flags"]],
  ["uffd-wp", ["uffd-flags"]],
  ["hugetlb", ["hugetlb"]],
];

for (const [mode, checks] of ROUND_TRIPS) {
  Deno.test(
    `memory probe ${mode}: the state comes back after dump, kill and restore`,
    withTargets(async () => {
      const a = await startTriggered("rt_memprobe", READY, { passWork: true, extra: [mode] });
      const holder = a.t.output().match(/^info holder=(\d+)$/m);
      if (holder) adoptPid(Number(holder[1]));
      await dumpKillRestore(a.t);
      await Deno.writeTextFile(a.trigger, "");
      const status = await a.t.wait();
      const unavailable = new RegExp(`^info ${mode}=unavailable`, "m").test(a.t.output());
      if (unavailable) console.log(`memory probe ${mode}: not available on this machine, not checked`);
      assertChecksPassed(a.t, unavailable ? [] : ["maps", ...checks], status, {
        what: `rt_memprobe ${mode}`,
      });
    }),
  );
}
