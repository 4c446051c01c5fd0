/**
 * A process in a Landlock domain (landlock_restrict_self) is refused by
 * the dump, by name (task.landlock; engine/task/landlock.ts): the domain
 * cannot be read back, and the restored process would run unrestricted.
 * tests/targets/landlock.c checks itself that a read its domain denies is
 * still denied after the refused dump. A process with no_new_privs and no
 * domain still dumps; where domains cannot be read (`CRYO_LANDLOCK=unread`),
 * a process with no_new_privs is refused by name (task.landlock-unchecked).
 * A process that restricted itself with CAP_SYS_ADMIN and dropped it
 * (cap-drop: neither no_new_privs nor a capability in its status) is
 * refused too: no credential /proc shows rules a domain out. A dump by a
 * fresh cryo process of a process of few threads reads the domains with
 * the small Landlock program, never loading the regular task program.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { landlockAbi, lastingProbeError } from "../engine/task/landlock_probe.ts";
import { BpfError } from "../ffi/bpf.ts";
import { LANDLOCK_UNFOUND_RETRY_MS } from "../engine/proc/vm_flags_memo.ts";
import {
  inInitialPidNamespace,
  loadThreadIterator,
  readThreadRecords,
  threadIteratorLayout,
  threadIteratorUnavailable,
} from "../engine/proc/thread_state_bpf.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { assertRefusedLeavesRunning, startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+)$/m;
const LANDLOCK_HERE = landlockAbi() > 0;

/** A test that needs Landlock enabled in the kernel (ignored elsewhere). */
function landlockTest(name: string, fn: () => Promise<void>): void {
  Deno.test({ name, ignore: !LANDLOCK_HERE, fn });
}

landlockTest(
  "landlock: the domain pointer's place in the credentials is found on this boot",
  () => {
    assert.ok(loadThreadIterator(), threadIteratorUnavailable());
    const offset = threadIteratorLayout()?.landlockOffset;
    assert.ok(offset !== undefined && offset >= 0 && offset % 8 === 0, `offset ${offset}`);
    return Promise.resolve();
  },
);

const DENIED = ["readable_first", "denied_before", "denied_after"] as const;
/** cap-drop's checks: restricted without no_new_privs, then every capability dropped. */
const CAP_DROP = [...DENIED, "caps_dropped", "nnp_clear"] as const;
/** cap-drop restricts itself with CAP_SYS_ADMIN: the test runs as root. */
const ROOT = Deno.uid() === 0;
/** The refusal of a process in a domain, named as the process. */
const REFUSED =
  /process \d+: a Landlock domain \(landlock_restrict_self\): cannot be read back: the restored process would run unrestricted/;

for (
  const [mode, checks, who] of [
    ["restrict", DENIED, /process \d+: a Landlock/],
    ["cap-drop", CAP_DROP, /process \d+: a Landlock/],
    [
      "restrict-threads",
      DENIED,
      /process \d+: a Landlock/, // every thread is in the domain: named as the process
    ],
    [
      "thread",
      ["readable_first", "thread_denied_before", "thread_denied_after", "main_free"],
      // Named by thread where the records' tids are cryo's (the initial pid namespace).
      inInitialPidNamespace()
        ? /process (\d+) thread (\d+): a Landlock/
        : /process \d+: a Landlock/,
    ],
  ] as const
) {
  if (mode === "cap-drop" && !ROOT) continue;
  landlockTest(
    `landlock: a dump of a process in a Landlock domain (${mode}) is refused by name, the target still restricted`,
    withTargets(() =>
      assertRefusedLeavesRunning("landlock", READY, mode, (e) => {
        assert.equal(e.items.length, 1, e.items.join("\n"));
        assert.match(e.items[0], who);
        assert.match(
          e.items[0],
          /a Landlock domain \(landlock_restrict_self\): cannot be read back: the restored process would run unrestricted/,
        );
        const m = e.items[0].match(/process (\d+) thread (\d+)/);
        if (m) assert.notEqual(m[1], m[2], "the restricted thread is not the main one");
      }, checks)
    ),
  );
}

landlockTest(
  "landlock: a process with no_new_privs and no domain still dumps",
  withTargets(async () => {
    const a = await startTriggered("landlock", READY, { passWork: true, extra: ["nnp"] });
    await checkpoint(a.t.pid, { dir: await tempImageDir(), leaveRunning: true });
    await Deno.writeTextFile(a.trigger, "");
    assertChecksPassed(
      a.t,
      ["readable_first", "readable_before", "readable_after"],
      await a.t.wait(),
      { what: "nnp" },
    );
  }),
);

for (const mode of ["nnp", "restrict"]) {
  landlockTest(
    `landlock: where domains cannot be read, a process with no_new_privs (${mode}) is refused by name`,
    withTargets(async () => {
      Deno.env.set("CRYO_LANDLOCK", "unread");
      try {
        await assertRefusedLeavesRunning(
          "landlock",
          READY,
          mode,
          (e) => {
            assert.equal(e.items.length, 1, e.items.join("\n"));
            assert.match(
              e.items[0],
              /process \d+: no_new_privs in a thread, on a host with Landlock enabled .*: it may be in a Landlock domain, which cannot be read here \(CRYO_LANDLOCK=unread\)/,
            );
          },
          mode === "nnp"
            ? ["readable_first", "readable_before", "readable_after"]
            : ["readable_first", "denied_before", "denied_after"],
        );
      } finally {
        Deno.env.delete("CRYO_LANDLOCK");
      }
    }),
  );
}

/**
 * Dumps `pid` (leaving it running) in a fresh cryo process, as the CLI
 * would: which reader its Landlock check took (engine/task/landlock.ts
 * `landlockReadStats`), whether it loaded the regular task program, and
 * the refusal's items if the dump was refused, and the main thread's
 * session keyring as the small program's record says after the dump.
 */
async function dumpInFreshCryo(pid: number): Promise<{
  stats: Record<string, number>;
  taskProgramLoaded: boolean;
  refused?: string[];
  /** Its main thread's session keyring as the small program's record says. */
  sessionKeyring: string | null;
}> {
  const root = new URL("..", import.meta.url).href;
  const script = `
    import { checkpoint } from "${root}engine/dump/mod.ts";
    import { credRecordsIfLoaded, landlockReadStats } from "${root}engine/task/landlock.ts";
    import { threadIteratorLoaded } from "${root}engine/proc/thread_state_bpf.ts";
    import { UnsupportedError } from "${root}engine/errors.ts";
    let refused;
    try {
      await checkpoint(${pid}, { dir: Deno.args[0], leaveRunning: true });
    } catch (e) {
      if (!(e instanceof UnsupportedError)) throw e;
      refused = e.items;
    }
    // The target's one thread (its tid is the initial pid namespace's, maybe not cryo's).
    const records = credRecordsIfLoaded(${pid});
    const main = records?.length === 1 ? records[0] : undefined;
    console.log(JSON.stringify({
      stats: landlockReadStats,
      taskProgramLoaded: threadIteratorLoaded(),
      refused,
      sessionKeyring: main?.sessionKeyring ?? null,
    }));
  `;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", script, "--", await tempImageDir()],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.ok(out.success, `the dump's process failed: ${new TextDecoder().decode(out.stderr)}`);
  return JSON.parse(text.trim().split("\n").at(-1)!);
}

for (
  const [mode, checks] of [
    ["nnp", ["readable_first", "readable_before", "readable_after"]],
    ["restrict", DENIED],
    ["cap-drop", CAP_DROP],
  ] as const
) {
  if (mode === "cap-drop" && !ROOT) continue;
  landlockTest(
    `landlock: a fresh cryo reads a one-thread process's domains with the small program, not the task program (${mode})`,
    withTargets(async () => {
      // The layout and offset remembered on this boot (as a first dump leaves them).
      assert.ok(loadThreadIterator(), threadIteratorUnavailable());
      const a = await startTriggered("landlock", READY, { passWork: true, extra: [mode] });
      const got = await dumpInFreshCryo(a.t.pid);
      assert.equal(got.taskProgramLoaded, false, "the regular task program was loaded");
      // Loaded once; read in the freeze (and in the rehearsal's, of its helper).
      assert.deepEqual(
        [got.stats.credLoads, got.stats.taskProgram, got.stats.taskLoads],
        [1, 0, 0],
        JSON.stringify(got.stats),
      );
      assert.ok(got.stats.credProgram >= 1, JSON.stringify(got.stats));
      // The small program's session keyring field (engine/task/keyrings.ts takes it) is the task
      // program's (loaded in this test process).
      const records = readThreadRecords(a.t.pid); // one thread
      assert.equal(records.length, 1);
      assert.ok(records[0].sessionKeyring, "the task program read no session keyring");
      assert.equal(got.sessionKeyring, records[0].sessionKeyring);
      if (mode === "nnp") assert.equal(got.refused, undefined, "a process in no domain refused");
      else {
        assert.equal(got.refused?.length, 1, String(got.refused));
        assert.match(got.refused![0], REFUSED);
      }
      await Deno.writeTextFile(a.trigger, "");
      assertChecksPassed(a.t, checks, await a.t.wait(), { what: mode });
    }),
  );
}

/**
 * Runs `loadThreadIterator` in a fresh cryo process with cache directory
 * `cache` (and `env`; under `noexec`, with TMPDIR on a noexec tmpfs of a
 * mount namespace of its own): the Landlock offset it found or why not, and
 * how many probes it tried.
 */
async function probeInFreshCryo(
  cache: string,
  noexec?: string,
): Promise<{ offset: number | null; unfound: string | null; tried: number }> {
  const root = new URL("..", import.meta.url).href;
  const script = `
    import {
      landlockOffsetUnfound, loadThreadIterator, threadIteratorLayout,
    } from "${root}engine/proc/thread_state_bpf.ts";
    import { landlockProbeStats } from "${root}engine/task/landlock_probe.ts";
    loadThreadIterator();
    console.log(JSON.stringify({
      offset: threadIteratorLayout()?.landlockOffset ?? null,
      unfound: landlockOffsetUnfound() ?? null,
      tried: landlockProbeStats.tried,
    }));
  `;
  const [cmd, args] = noexec
    ? [
      "unshare",
      [
        "-m",
        "--",
        "sh",
        "-c",
        'mount -t tmpfs -o noexec cryo-noexec "$1" && exec "$2" eval "$3"',
        "sh",
        noexec,
        Deno.execPath(),
        script,
      ],
    ]
    : [Deno.execPath(), ["eval", script]];
  const out = await new Deno.Command(cmd, {
    args,
    env: { CRYO_CACHE_DIR: cache, ...(noexec ? { TMPDIR: noexec } : {}) },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const err = new TextDecoder().decode(out.stderr);
  assert.ok(out.success, `the probe's process failed: ${err}`);
  return JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!);
}

/** The memo file of this boot in cache directory `cache` (engine/proc/vm_flags_memo.ts). */
function memoFileOf(cache: string): string {
  const boot = Deno.readTextFileSync("/proc/sys/kernel/random/boot_id").trim();
  return `${cache}/vmflags/${boot}.json`;
}

Deno.test({
  name:
    "landlock: a failed offset probe (the probe's file on a noexec mount) is remembered for a minute, not run again, then tried again",
  ignore: !LANDLOCK_HERE || !ROOT,
  fn: async () => {
    const cache = await Deno.makeTempDir({ prefix: "cryo-landlock-cache-" });
    const noexec = await Deno.makeTempDir({ prefix: "cryo-landlock-noexec-" });
    const fresh = await Deno.makeTempDir({ prefix: "cryo-landlock-cache-" });
    try {
      const failed = await probeInFreshCryo(cache, noexec);
      assert.equal(failed.offset, null, "found on a noexec mount");
      assert.equal(failed.tried, 1);
      assert.match(failed.unfound ?? "", /the probe failed|no domain pointer/);
      // The next dump of the minute (a usable TMPDIR now) does not probe again.
      const next = await probeInFreshCryo(cache);
      assert.deepEqual(next, { offset: null, unfound: failed.unfound, tried: 0 });
      // A failure that may pass is remembered for a minute only: once it is over (its time set
      // back in the memo), the next dump probes again and finds the offset.
      const memo = memoFileOf(cache);
      const before = JSON.parse(Deno.readTextFileSync(memo));
      const until = before.threadState.landlockUnfoundUntil;
      assert.ok(
        typeof until === "number" && until > Date.now() &&
          until <= Date.now() + LANDLOCK_UNFOUND_RETRY_MS,
        `remembered for a minute: ${JSON.stringify(before.threadState)}`,
      );
      before.threadState.landlockUnfoundUntil = Date.now() - 1;
      Deno.writeTextFileSync(memo, JSON.stringify(before));
      const again = await probeInFreshCryo(cache);
      assert.equal(again.tried, 1, JSON.stringify(again));
      assert.ok(again.offset !== null && again.offset >= 0, JSON.stringify(again));
      // With no failure remembered, the same dump would have found it.
      const control = await probeInFreshCryo(fresh);
      assert.equal(control.tried, 1);
      assert.ok(control.offset !== null && control.offset >= 0, JSON.stringify(control));
    } finally {
      for (const dir of [cache, noexec, fresh]) await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("landlock: only the verifier's rejection of the probe's program is a lasting failure", () => {
  // Made as ffi/bpf.ts's loader makes them (the log is read again after a refused load).
  assert.equal(lastingProbeError(new BpfError("BPF_PROG_LOAD", 13, "R1 invalid mem access")), true);
  assert.equal(lastingProbeError(new BpfError("BPF_PROG_LOAD", 22, "unknown func")), true);
  // No memory (the verifier's or a memlock limit), a signal, the caller's rights: may pass.
  assert.equal(lastingProbeError(new BpfError("BPF_PROG_LOAD", 12, "")), false);
  assert.equal(lastingProbeError(new BpfError("BPF_PROG_LOAD", 12, "processed 9 insns")), false);
  assert.equal(lastingProbeError(new BpfError("BPF_PROG_LOAD", 11, "")), false);
  assert.equal(lastingProbeError(new BpfError("BPF_PROG_LOAD", 1, "")), false);
  assert.equal(lastingProbeError(new BpfError("BPF_PROG_LOAD", 13, "")), false);
  // A temporary file or a spawn that failed.
  assert.equal(lastingProbeError(new Error("No space left on device (os error 28)")), false);
});
