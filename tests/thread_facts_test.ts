/**
 * The threads' statuses stood in for by the BPF task iterator's records
 * (engine/dump/thread_facts.ts): on frozen targets whose threads differ
 * (rt_creds "threads": ids, groups, capabilities, no_new_privs per thread;
 * rt_attrs: seccomp filters, a thread in strict mode, no_new_privs, thread
 * names, an I/O flusher thread; rt_threadstate) every thread's facts equal
 * its status (and their task flags its stat file's), and a
 * stand-in status answers every field as the thread's own status does;
 * the first dump is the check, the next takes the records, and both record
 * what a dump that reads every status records; the restored target passes
 * its checks; before a trusted freeze only the statuses it reads are
 * opened ahead. A comm with a backslash and a newline is escaped as the
 * kernel's status escapes it.
 */

import assert from "node:assert/strict";
import { readThreadRecords } from "../engine/proc/thread_state_bpf.ts";
import type { TaskRecord } from "../ffi/bpf_task.ts";
import {
  bpfThreadStates,
  credKeyOf,
  credReferences,
  factsOf,
  statusNeeded,
  type ThreadFacts,
  threadStatePaths,
  warmUpThreadStates,
} from "../engine/dump/thread_state.ts";
import {
  checkStatusFacts,
  factsDiffer,
  statusFactPaths,
  statusFromFacts,
  threadStatuses,
} from "../engine/dump/thread_facts.ts";
import { type ProcStatus, readStatus, readThreadStatuses } from "../engine/proc/status.ts";
import { freezeTree, thawTree } from "../engine/dump/freeze.ts";
import { checkpoint } from "../engine/dump/mod.ts";
import { readImageFile } from "../engine/image/reader.ts";
import { recallThreadState } from "../engine/proc/vm_flags_memo.ts";
import { readStat } from "../engine/proc/stat.ts";
import { taskFlagPaths, taskFlagsOf } from "../engine/dump/task_flags.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { dumpKillRestore, startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";
import { threadBpfTest, withMemoEnv } from "./helpers/thread_bpf.ts";

/** The fields a stand-in status must answer as the thread's own does. */
const FIELDS: (keyof ProcStatus)[] = [
  "name",
  "tgid",
  "pid",
  "uid",
  "gid",
  "groups",
  "capInh",
  "capPrm",
  "capEff",
  "capBnd",
  "capAmb",
  "noNewPrivs",
  "seccomp",
  "umask",
  "state",
  "ppid",
  "tracerPid",
  "nspid",
  "sigBlk",
  "sigIgn",
  "sigCgt",
  "threadFeatures",
];

/** What a dump records per thread from the statuses (and what depends on them). */
async function perThread(dir: string, pid: number) {
  return (await readImageFile(`${dir}/${pid}.elf`)).process.threads.map((th) => ({
    tid: th.tid,
    comm: th.comm,
    creds: th.creds,
    attrs: th.attrs,
    seccomp: th.seccomp,
    sigmask: th.sigmask,
  }));
}

/**
 * The threads whose statuses a trusted freeze of `pid` reads, from its
 * records: the main thread, and of the others whose struct cred is not the
 * main thread's nor has its contents, the lowest tid per struct cred.
 */
function expectedReads(records: TaskRecord[], pid: number): Set<number> {
  const mine = factsOf(records.find((r) => r.tid === pid)!);
  const read = new Set([pid]);
  const keyed = records.map((r) => [r.tid, credKeyOf(factsOf(r), mine)] as const);
  for (const cred of new Set(keyed.map(([, k]) => k))) {
    if (cred === mine.realCred) continue;
    read.add(Math.min(...keyed.filter(([, k]) => k === cred).map(([tid]) => tid)));
  }
  return read;
}

/**
 * Starts `target` (`extra` its arguments), compares its frozen threads'
 * facts and stand-ins with their statuses (`expect` asserts what the
 * records show), then dumps it three times (the check, the records, every
 * status read) and compares what they record, and restores the last.
 */
async function factsRoundTrip(
  target: string,
  extra: string[],
  ready: RegExp,
  expect: (
    facts: { realCred: bigint; noNewPrivs: boolean; seccomp: number; ioFlusher?: boolean }[],
    main: bigint,
    /** The target's output so far. */
    output: string,
  ) => void,
  /** Asserts on the records read after the first dump (with the threads whose statuses are read). */
  afterFirst?: (records: TaskRecord[], read: Set<number>) => void,
): Promise<void> {
  const { t, trigger } = await startTriggered(target, ready, { extra });
  const tree = freezeTree(t.pid);
  let thawed = false;
  try {
    const tids = tree.processes[0].threads;
    const bpf = bpfThreadStates(t.pid, tids);
    assert.ok(bpf, threadStatePaths.get(t.pid));
    const real = readThreadStatuses(t.pid, tids);
    const main = real.get(t.pid)!;
    const mine = bpf.facts.get(t.pid)!;
    for (const tid of tids) {
      const f: ThreadFacts = bpf.facts.get(tid)!;
      const st = real.get(tid)!;
      const same = f.realCred === mine.realCred;
      assert.equal(factsDiffer(f, st, main, same), undefined, `${target} thread ${tid}`);
      if (!same) continue;
      const stand = statusFromFacts(t.pid, tid, main, f);
      for (const k of FIELDS) assert.deepEqual(stand[k], st[k], `${target} thread ${tid}: ${k}`);
    }
    expect([...bpf.facts.values()], mine.realCred, t.output());
    // A stand-in whose own status was not read in the freeze refuses to read it after the
    // thaw (it would give the running thread's masks as the frozen ones).
    const other = tids.find((tid) =>
      tid !== t.pid && bpf.facts.get(tid)!.realCred === mine.realCred
    );
    if (other !== undefined) {
      const late = statusFromFacts(t.pid, other, main, bpf.facts.get(other)!);
      thawTree(tree);
      thawed = true;
      assert.throws(() => late.sigBlk, /after its freeze ended/);
      assert.equal(late.name, bpf.facts.get(other)!.name, "what the records gave stays");
    }
  } finally {
    if (!thawed) thawTree(tree);
  }
  const first = await tempImageDir();
  await checkpoint(t.pid, { dir: first, leaveRunning: true });
  assert.equal(statusFactPaths.get(t.pid), "bpf: checked", `${target}: the check`);
  assert.ok(recallThreadState()?.confirmed.has("status_facts"));
  assert.ok(recallThreadState()?.confirmed.has("task_flags"), "the task flags checked too");
  // Before the next freeze only the statuses it will read are opened ahead: the main
  // thread's and, of the threads with another struct cred, one per struct cred.
  warmUpThreadStates(t.pid);
  const need = statusNeeded(t.pid);
  const records = readThreadRecords(t.pid);
  const read = expectedReads(records, t.pid);
  for (const r of records) assert.equal(need(r.tid), read.has(r.tid), `${target} ${r.tid}`);
  afterFirst?.(records, read);
  const second = await tempImageDir();
  await checkpoint(t.pid, { dir: second, leaveRunning: true });
  assert.equal(statusFactPaths.get(t.pid), "bpf", `${target}: the records`);
  assert.equal(taskFlagPaths.get(t.pid), "bpf", `${target}: the records' task flags`);
  const third = await injectedDump(t.pid);
  const want = await perThread(third, t.pid);
  assert.deepEqual(await perThread(first, t.pid), want, `${target}: the check's image`);
  assert.deepEqual(await perThread(second, t.pid), want, `${target}: the records' image`);
  const { dir } = await dumpKillRestore(t);
  assert.equal(statusFactPaths.get(t.pid), "bpf");
  assert.deepEqual(await perThread(dir, t.pid), want, `${target}: the restored image`);
  await Deno.writeTextFile(trigger, "");
  assertChecksPassed(t, [], await t.wait(15000), { what: `${target} ${extra.join(" ")}` });
}

// First: before any dump in this process makes it a session keyring, which the targets inherit.
threadBpfTest(
  "thread facts: threads sharing a struct cred other than the main thread's (after a first dump's keyctl) have one status read for them all, and it restores",
  withTargets(() =>
    withMemoEnv(
      { CRYO_THREADSTATE: "bpf" },
      () =>
        factsRoundTrip(
          "rt_threads",
          [],
          /^ready pid=(\d+) tids=([\d,]+)$/m,
          (facts, main) => assert.ok(facts.every((f) => f.realCred === main), "fresh: one cred"),
          (records, read) => {
            const mainCred = records.find((r) => r.tid === r.tgid)!.realCred;
            const others = records.filter((r) => r.realCred !== mainCred);
            if (others.length === 0) {
              // The target inherited a session keyring (this test process made one): the
              // dump's keyctl gave its main thread no new cred. Nothing else to see here.
              console.log("rt_threads kept one struct cred (it had a session keyring)");
              assert.equal(read.size, 1);
              return;
            }
            assert.equal(others.length, records.length - 1, "the main thread has a new cred");
            assert.equal(new Set(others.map((r) => r.realCred)).size, 1, "the others share one");
            // Its contents are the main thread's (the session keyring is not in them).
            assert.equal(read.size, 1, "the main thread's status alone");
          },
        ),
    )
  ),
);

threadBpfTest(
  "thread facts: a restored process's threads, each with its own struct cred of the same contents, stand in from the main thread's status, and record what every status read records",
  withTargets(() =>
    withMemoEnv({ CRYO_THREADSTATE: "bpf" }, async () => {
      const { t, trigger } = await startTriggered("rt_threads", /^ready pid=(\d+) tids=([\d,]+)$/m);
      await dumpKillRestore(t);
      const records = readThreadRecords(t.pid);
      assert.equal(new Set(records.map((r) => r.realCred)).size, records.length, "own creds");
      assert.deepEqual([...expectedReads(records, t.pid)], [t.pid], "the main thread's alone");
      const first = await tempImageDir();
      await checkpoint(t.pid, { dir: first, leaveRunning: true }); // the check
      warmUpThreadStates(t.pid);
      const need = statusNeeded(t.pid);
      for (const r of records) assert.equal(need(r.tid), r.tid === t.pid, `thread ${r.tid}`);
      const second = await tempImageDir();
      await checkpoint(t.pid, { dir: second, leaveRunning: true });
      assert.equal(statusFactPaths.get(t.pid), "bpf", "the records");
      const third = await injectedDump(t.pid);
      const want = await perThread(third, t.pid);
      assert.deepEqual(await perThread(first, t.pid), want, "the check's image");
      assert.deepEqual(await perThread(second, t.pid), want, "the records' image");
      await Deno.writeTextFile(trigger, "");
      assertChecksPassed(t, [], await t.wait(15000), { what: "rt_threads restored" });
    })
  ),
);

threadBpfTest(
  "thread facts: rt_creds' threads with credentials of their own are read from their statuses, and it restores",
  withTargets(() =>
    withMemoEnv({ CRYO_THREADSTATE: "bpf" }, () =>
      factsRoundTrip(
        "rt_creds",
        ["threads"],
        /^ready pid=(\d+) mode=(\w+) dumpable=(\d)$/m,
        (facts, main) => {
          assert.ok(facts.some((f) => f.realCred !== main), "a thread with its own credentials");
          assert.ok(facts.some((f) => f.noNewPrivs), "a thread with no_new_privs");
        },
      ))
  ),
);

threadBpfTest(
  "thread facts: rt_attrs' seccomp modes, no_new_privs and thread names are the statuses', and it restores",
  withTargets(() =>
    withMemoEnv(
      { CRYO_THREADSTATE: "bpf" },
      () =>
        factsRoundTrip("rt_attrs", [], /^ready pid=(\d+)$/m, (facts, main, output) => {
          assert.ok(facts.some((f) => f.seccomp === 1), "a thread in strict mode");
          assert.ok(facts.some((f) => f.seccomp === 2), "a thread with filters");
          assert.ok(facts.some((f) => f.noNewPrivs));
          assert.ok(facts.filter((f) => f.realCred === main).length > 1, "stand-ins");
          // PR_SET_IO_FLUSHER needs CAP_SYS_RESOURCE (the target says when it could not set it).
          const flushers = /^info io-flusher=unavailable/m.test(output) ? 0 : 1;
          assert.equal(facts.filter((f) => f.ioFlusher).length, flushers, "I/O flusher threads");
        }),
    )
  ),
);

threadBpfTest(
  "thread facts: rt_threadstate's threads (their own securebits: their own credentials) are read, and it restores",
  withTargets(() =>
    withMemoEnv(
      { CRYO_THREADSTATE: "bpf" },
      () =>
        factsRoundTrip("rt_threadstate", [], /^ready pid=(\d+)$/m, (facts, main) => {
          assert.equal(facts.filter((f) => f.realCred === main).length, 1);
        }),
    )
  ),
);

threadBpfTest(
  "thread facts: a comm with a backslash and a newline is escaped as the status's Name",
  () => {
    // One of this process's own threads, renamed for the test and named back.
    const tid = readThreadRecords(Deno.pid).find((r) => r.tid !== Deno.pid)!.tid;
    const path = `/proc/${Deno.pid}/task/${tid}/comm`;
    const before = Deno.readTextFileSync(path).replace(/\n$/, "");
    try {
      Deno.writeTextFileSync(path, "a\\b\nc\u00e9");
      const r = readThreadRecords(Deno.pid).find((x) => x.tid === tid)!;
      const st = readStatus(Deno.pid, tid);
      assert.equal(factsOf(r).name, st.name);
      assert.equal(st.name, "a\\\\b\\nc\u00e9");
    } finally {
      Deno.writeTextFileSync(path, before);
    }
  },
);

/** A dump (left running) with every thread's state injected (CRYO_THREADSTATE=inject; "bpf" after). */
async function injectedDump(pid: number): Promise<string> {
  Deno.env.set("CRYO_THREADSTATE", "inject");
  const dir = await tempImageDir();
  try {
    await checkpoint(pid, { dir, leaveRunning: true });
  } finally {
    Deno.env.set("CRYO_THREADSTATE", "bpf");
  }
  return dir;
}

/** `pid` and two of its other threads (this test process: Deno's own threads). */
function mainAndTwoThreads(pid: number): number[] {
  const others = [...Deno.readDirSync(`/proc/${pid}/task`)].map((e) => Number(e.name))
    .filter((t) => t !== pid);
  return [pid, ...others.slice(0, 2)];
}

Deno.test("thread facts: one status per struct cred other than the main thread's, the lowest tid's", () => {
  const refs = credReferences([[7, 1n], [5, 2n], [9, 2n], [3, 2n], [4, 3n], [8, 1n]], 1n);
  assert.deepEqual([...refs].sort((a, b) => a - b), [3, 4]);
  assert.equal(credReferences([[7, 1n], [8, 1n]], 1n).size, 0);
});

Deno.test("thread facts: without the records every status is read", () => {
  const tids = [Deno.pid];
  const m = threadStatuses(Deno.pid, tids, undefined);
  assert.equal(m.get(Deno.pid)!.pid, Deno.pid);
});

Deno.test("thread facts: a fact other than the status's is refuted for the boot; a trusted main thread that differs sends every thread to its status", () =>
  withMemoEnv({}, async () => {
    const pid = Deno.pid;
    const tids = mainAndTwoThreads(pid);
    const real = readThreadStatuses(pid, tids);
    const factsFor = (st: ProcStatus, seccomp = st.seccomp): ThreadFacts => ({
      realCred: 1n,
      noNewPrivs: st.noNewPrivs,
      seccomp,
      name: st.name,
    });
    const bpf = (wrongMain: boolean, trusted: boolean) => ({
      pid,
      states: new Map(),
      set: new Set<string>(),
      trusted: false,
      facts: new Map(tids.map((t) => {
        const st = real.get(t)!;
        return [t, factsFor(st, t === pid && wrongMain ? 2 : st.seccomp)] as const;
      })),
      factsSet: new Set<string>(),
      factsTrusted: trusted,
      nsproxy: new Map<number, bigint>(),
      fs: new Map<number, bigint>(),
      files: new Map<number, bigint>(),
      cssSets: new Map<number, bigint>(),
      loginIds: new Map(),
      specFlags: new Map<number, number>(),
      threadKeyring: new Map<number, bigint>(),
      records: [],
    });
    // Equal: the check passes and is remembered.
    assert.equal(checkStatusFacts(bpf(false, false), real), undefined);
    assert.equal(statusFactPaths.get(pid), "bpf: checked");
    assert.ok(recallThreadState()?.confirmed.has("status_facts"));
    // Trusted: the other threads stand in (their own status read only for other fields).
    const taken = threadStatuses(pid, tids, bpf(false, true));
    assert.equal(statusFactPaths.get(pid), "bpf");
    for (const t of tids) assert.equal(taken.get(t)!.name, real.get(t)!.name);
    // A trusted main thread that differs: every status read, the difference remembered.
    const read = threadStatuses(pid, tids, bpf(true, true));
    assert.match(statusFactPaths.get(pid)!, /^status: main thread: seccomp 2 != 0/);
    assert.match(recallThreadState()!.refuted!, /main thread status: seccomp/);
    for (const t of tids) assert.equal(read.get(t)!.seccomp, real.get(t)!.seccomp);
    // The check finds a thread's difference.
    assert.match(checkStatusFacts(bpf(true, false), real)!, /^thread \d+: seccomp 2 != 0/);
    await Promise.resolve();
  }));

Deno.test("thread facts: the task flags are checked against the stat files, and stand in for them only once checked", () =>
  withMemoEnv({}, async () => {
    const pid = Deno.pid;
    const tids = mainAndTwoThreads(pid);
    const PF_IO_FLUSHER = 0x00080000 | 0x00100000;
    const stat = new Map(tids.map((t) => [t, readStat(pid, t).flags]));
    const bpf = (extraFlags: number, flagsTrusted: boolean) => ({
      pid,
      states: new Map(),
      set: new Set<string>(),
      trusted: false,
      facts: new Map(tids.map((t) => {
        const taskFlags = stat.get(t)! | (t === pid ? extraFlags : 0);
        return [t, {
          realCred: 1n,
          noNewPrivs: false,
          seccomp: 0,
          name: "",
          taskFlags,
          ioFlusher: (taskFlags & PF_IO_FLUSHER) === PF_IO_FLUSHER,
        }] as const;
      })),
      factsSet: new Set<string>(),
      factsTrusted: false,
      nsproxy: new Map(),
      fs: new Map(),
      files: new Map(),
      cssSets: new Map(),
      loginIds: new Map(),
      specFlags: new Map(),
      threadKeyring: new Map(),
      records: [],
      flagsTrusted,
    });
    const fromStat = (m: Map<number, number>) => {
      assert.deepEqual([...m.keys()].sort(), [...tids].sort());
      for (const t of tids) assert.equal(m.get(t), stat.get(t)!, `thread ${t}`);
    };
    assert.equal(taskFlagsOf(undefined), undefined);
    // Not yet checked: the stat files are read (their values taken) and compared.
    fromStat(taskFlagsOf(bpf(0, false))!);
    assert.equal(taskFlagPaths.get(pid), "stat: checked");
    const memo = recallThreadState()!;
    assert.ok(memo.confirmed.has("task_flags"));
    assert.ok(!memo.checked, "the flags' check marks nothing else checked");
    // Trusted: the records' flags.
    const taken = taskFlagsOf(bpf(PF_IO_FLUSHER, true))!;
    assert.equal(taskFlagPaths.get(pid), "bpf");
    assert.equal(taken.get(pid), stat.get(pid)! | PF_IO_FLUSHER, "the records' value");
    // Flags other than the stat file's: the stat file's taken, refuted for the boot.
    fromStat(taskFlagsOf(bpf(PF_IO_FLUSHER, false))!);
    assert.match(taskFlagPaths.get(pid)!, /^stat: thread \d+: flags /);
    assert.match(recallThreadState()!.refuted!, /flags 0x[0-9a-f]+ != 0x[0-9a-f]+ \(stat\)/);
    await Promise.resolve();
  }));
