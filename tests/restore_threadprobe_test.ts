/**
 * Per-thread process state (tests/targets/rt_threadprobe.c): a worker
 * thread sets its own value of one kind, different from the main
 * thread's; after dump, kill and restore every thread must find its own
 * value again, or the dump must refuse the process by name (and leave it
 * running, and no image). Each kind runs with two threads (the injected
 * per-thread reads) and with ten ("many": the BPF task iterator's reads,
 * where available). Kinds this kernel refuses to set are reported by the
 * target as unavailable and not checked.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { UnsupportedError } from "../engine/errors.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { pathExists } from "./helpers/fs.ts";
import { statusField } from "./helpers/proc.ts";
import { dumpKillRestore, startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+)$/m;

/** Kind, and what the dump does with it: restore it per thread, or refuse it (the message's pattern). */
const KINDS: [string, "restored" | RegExp][] = [
  ["tsc", "restored"],
  ["tscmain", "restored"],
  ["mce", "restored"],
  ["spec", "restored"],
  ["ioflusher", "restored"],
  ["personality", "restored"],
  // Saved and set again in each thread (engine/memory/mempolicy.ts; branch numapolicy).
  ["mempolicy", "restored"],
  ["mempolicymain", "restored"],
  ["seccomp", "restored"],
  ["gsbase", "restored"],
  ["unsharefs", /thread \d+: a thread with cwd, root and umask of its own/],
  ["unsharefiles", /thread \d+: a thread with an fd table of its own/],
  ["uts", /thread \d+: a thread in namespaces other than its main thread's/],
  ["nnp", "restored"],
  ["slack", "restored"],
  ["sigmask", "restored"],
  ["comm", "restored"],
  ["affinity", "restored"],
  ["nice", "restored"],
  ["ioprio", "restored"],
  ["caps", "restored"],
  ["uid", "restored"],
  ["cpuid", "restored"],
  ["sigaltstack", "restored"],
  ["pdeathsig", "restored"],
  ["pending", "restored"],
  ["ctid", "restored"],
  ["robust", "restored"],
  ["threadkeyring", /thread \d+: thread and process keyrings \(keyctl\): it has a thread keyring/],
  ["timertid", "restored"],
  [
    "cputimer",
    /POSIX timer 0 \(CLOCK_THREAD_CPUTIME_ID\): POSIX timers tied to a thread or process cryo cannot name/,
  ],
];

const TIMERS = new Set(["timertid", "cputimer"]);

for (const [kind, expect] of KINDS) {
  for (const many of [false, true]) {
    const threads = many ? "ten threads" : "two threads";
    const what = expect === "restored"
      ? "every thread has its own value after dump, kill and restore"
      : "dump refuses it by name; the target runs on untouched";
    Deno.test(
      `thread probe ${kind} (${threads}): ${what}`,
      withTargets(async () => {
        const a = await startTriggered("rt_threadprobe", READY, {
          extra: [kind, ...(many ? ["many"] : [])],
        });
        const unavailable = new RegExp(`^info ${kind}=unavailable`, "m").test(a.t.output());
        if (unavailable) console.log(`thread probe ${kind}: not available on this machine`);
        const nthreads = many ? 10 : 2;
        const checks = TIMERS.has(kind) ? [kind] : unavailable ? [] : [
          `${kind}-main0`,
          `${kind}-worker1`,
          ...Array.from({ length: nthreads - 2 }, (_, i) => `${kind}-extra${i + 2}`),
        ];
        if (expect === "restored" || unavailable) {
          await dumpKillRestore(a.t);
        } else {
          const dir = await tempImageDir();
          await assert.rejects(checkpoint(a.t.pid, { dir }), (e: unknown) => {
            assert.ok(e instanceof UnsupportedError, `expected UnsupportedError, got ${e}`);
            assert.match(e.message, expect);
            return true;
          });
          assert.equal(pathExists(dir), false, "the refused dump left an image");
          assert.equal(statusField(a.t.pid, "TracerPid"), "0");
        }
        await Deno.writeTextFile(a.trigger, "");
        assertChecksPassed(a.t, checks, await a.t.wait());
      }),
    );
  }
}
