/**
 * Round trip of process attributes (tests/targets/rt_attrs.c:
 * oom_score_adj, parent-death signals, dumpable, child subreaper, THP
 * disable, membarrier registrations, no_new_privs, seccomp filters and
 * strict mode, thread names, login uid and session id), and the two ways
 * they are refused: a seccomp filter with a user-space listener at dump
 * (the target keeps running untouched), a login uid other than the
 * restorer's at restore (nothing is created).
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { restore } from "../engine/restore/mod.ts";
import { RestoreError, UnsupportedError } from "../engine/errors.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { pathExists } from "./helpers/fs.ts";
import { statusField } from "./helpers/proc.ts";
import { dumpKillRestore, startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";
import { threadBpfTest, withMemoEnv } from "./helpers/thread_bpf.ts";

const READY = /^ready pid=(\d+)$/m;
const CHECKS = [
  "oom_score_adj",
  "dumpable",
  "subreaper",
  "thp-disable",
  "membarrier-registrations",
  "membarrier-private-expedited",
  "login-ids",
  ...["main", "extra"].flatMap((t) =>
    ["pdeathsig", "no-new-privs", "seccomp-filters", "seccomp-effect", "comm"].map((c) =>
      `${t}-${c}`
    )
  ),
  "strict-mode",
  "strict-comm",
  "strict-thread-runs",
];

Deno.test(
  "process attributes and seccomp survive dump, kill and restore",
  withTargets(async () => {
    const a = await startTriggered("rt_attrs", READY);
    await dumpKillRestore(a.t);
    // Seccomp acts again, and the restorer no longer traces it.
    assert.equal(statusField(a.t.pid, "Seccomp"), "2");
    assert.equal(statusField(a.t.pid, "TracerPid"), "0");
    await Deno.writeTextFile(a.trigger, "");
    assertChecksPassed(a.t, CHECKS, await a.t.wait());
  }),
);

Deno.test(
  "a seccomp filter shared by all threads is shared again after restore (TSYNC reaches them all)",
  withTargets(async () => {
    const a = await startTriggered("rt_attrs", READY, { extra: ["tsync"] });
    await dumpKillRestore(a.t);
    await Deno.writeTextFile(a.trigger, "");
    const shared = CHECKS.filter((c) => !c.startsWith("strict-"));
    assertChecksPassed(a.t, [...shared, "tsync-shared"], await a.t.wait());
  }),
);

/**
 * Dumps rt_attrs in `mode`, which the dump must refuse with a message
 * matching `pattern` (given the target's pid); then the target, untouched
 * and no longer traced, passes its checks.
 */
async function assertAttrsRefused(mode: string, pattern: (pid: number) => string): Promise<void> {
  const a = await startTriggered("rt_attrs", READY, { extra: [mode] });
  const dir = await tempImageDir();
  await assert.rejects(checkpoint(a.t.pid, { dir }), (e: unknown) => {
    assert.ok(e instanceof UnsupportedError, `expected UnsupportedError, got ${e}`);
    assert.match(e.message, new RegExp(pattern(a.t.pid)));
    return true;
  });
  assert.equal(pathExists(dir), false, "the refused dump left an image");
  assert.equal(statusField(a.t.pid, "TracerPid"), "0");
  await Deno.writeTextFile(a.trigger, "");
  assertChecksPassed(a.t, CHECKS, await a.t.wait());
}

Deno.test(
  "dump refuses a seccomp filter with a user-space listener; the target runs on untouched",
  withTargets(() =>
    assertAttrsRefused(
      "notify",
      (pid) =>
        `process ${pid} thread \\d+ seccomp filter 2: seccomp filters handing syscalls ` +
        "to a user-space listener: the listener's fd cannot be re-connected",
    )
  ),
);

/** Dump refuses rt_attrs's strict thread, started before its main thread set its login uid. */
function threadLoginRefused(): Promise<void> {
  return assertAttrsRefused(
    "thread-login",
    (pid) =>
      `process ${pid} thread \\d+: a thread with a login uid or session id other than ` +
      `its main thread's .*its login uid \\d+ and session id \\d+ are not its ` +
      `main thread's \\(4242, \\d+\\)`,
  );
}

Deno.test(
  "dump refuses a thread whose login uid is not its main thread's; the target runs on untouched",
  withTargets(threadLoginRefused),
);

threadBpfTest(
  "dump refuses a thread whose login uid is not its main thread's (task iterator's records)",
  withTargets(() => withMemoEnv({ CRYO_THREADSTATE: "bpf" }, threadLoginRefused)),
);

Deno.test(
  "restore refuses a login uid and session id other than the restorer's, creating nothing",
  withTargets(async () => {
    const a = await startTriggered("rt_attrs", READY, { extra: ["loginuid"] });
    const dir = await tempImageDir();
    await checkpoint(a.t.pid, { dir });
    await a.t.wait();
    const self = (name: string) => Deno.readTextFileSync(`/proc/thread-self/${name}`).trim();
    await assert.rejects(restore(dir), (e: unknown) => {
      assert.ok(e instanceof RestoreError, `expected RestoreError, got ${e}`);
      assert.match(
        e.message,
        new RegExp(
          `^cannot restore: process ${a.t.pid} had login uid 4242 and session id \\d+; ` +
            `restored processes get the restorer's session id \\(${self("sessionid")}\\): ` +
            `--new-audit-session gives them login uid 4242 with a new session id$`,
        ),
      );
      return true;
    });
    assert.equal(pathExists(`/proc/${a.t.pid}`), false, "the refused restore created the process");
  }),
);

Deno.test(
  "restore with newAuditSession gives back the login uid, with a new session id",
  withTargets(async () => {
    const a = await startTriggered("rt_attrs", READY, { extra: ["loginuid-new"] });
    await dumpKillRestore(a.t, { newAuditSession: true });
    assert.equal(Deno.readTextFileSync(`/proc/${a.t.pid}/loginuid`), "4242");
    await Deno.writeTextFile(a.trigger, "");
    assertChecksPassed(a.t, CHECKS, await a.t.wait());
  }),
);

Deno.test({
  name: "an unset login uid and session id come back unset from a restorer that has them set",
  // A runner started from a login session has one: its targets would have it too.
  ignore: Deno.readTextFileSync("/proc/thread-self/loginuid") !== "4294967295",
  fn: withTargets(async () => {
    const a = await startTriggered("rt_attrs", READY);
    const dir = await tempImageDir();
    await checkpoint(a.t.pid, { dir });
    await a.t.wait();
    // The restorer's own, for this test alone: per thread, of the thread that runs JavaScript
    // (it creates the launcher; the process's first thread may be another).
    const own = "/proc/thread-self/loginuid";
    Deno.writeTextFileSync(own, "4343");
    try {
      const tree = await restore(dir);
      a.t.resetAfterRestore();
      for (const pid of tree.pids) assert.equal(pid, a.t.pid);
    } finally {
      Deno.writeTextFileSync(own, "4294967295"); // root may unset it (CAP_AUDIT_CONTROL)
    }
    await Deno.writeTextFile(a.trigger, "");
    assertChecksPassed(a.t, CHECKS, await a.t.wait());
  }),
});
