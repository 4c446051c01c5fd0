/**
 * The threads' statuses stood in for by the BPF task iterator's records
 * (engine/dump/thread_facts.ts): on frozen targets whose threads differ
 * (rt_creds "threads": ids, groups, capabilities, no_new_privs per thread;
 * rt_attrs: seccomp filters, a thread in strict mode, no_new_privs, thread
 * names; rt_threadstate) every thread's facts equal its status, and a
 * stand-in status answers every field as the thread's own status does;
 * the first dump is the check, the next takes the records, and both record
 * what a dump that reads every status records; the restored target passes
 * its checks; before a trusted freeze only the statuses it reads are
 * opened ahead. A comm with a backslash and a newline is escaped as the
 * kernel's status escapes it.
 */

import assert from "node:assert/strict";
import { readThreadRecords } from "../engine/proc/thread_state_bpf.ts";
import {
  bpfThreadStates,
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
    facts: { realCred: bigint; noNewPrivs: boolean; seccomp: number }[],
    main: bigint,
  ) => void,
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
    expect([...bpf.facts.values()], mine.realCred);
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
  // Before the next freeze only the statuses it will read are opened ahead: the main
  // thread's and those of threads with credentials of their own.
  warmUpThreadStates(t.pid);
  const need = statusNeeded(t.pid);
  const records = readThreadRecords(t.pid);
  const mainCred = records.find((r) => r.tid === t.pid)!.realCred;
  for (const r of records) {
    assert.equal(need(r.tid), r.tid === t.pid || r.realCred !== mainCred, `${target} ${r.tid}`);
  }
  const second = await tempImageDir();
  await checkpoint(t.pid, { dir: second, leaveRunning: true });
  assert.equal(statusFactPaths.get(t.pid), "bpf", `${target}: the records`);
  Deno.env.set("CRYO_THREADSTATE", "inject");
  const third = await tempImageDir();
  try {
    await checkpoint(t.pid, { dir: third, leaveRunning: true });
  } finally {
    Deno.env.set("CRYO_THREADSTATE", "bpf");
  }
  const want = await perThread(third, t.pid);
  assert.deepEqual(await perThread(first, t.pid), want, `${target}: the check's image`);
  assert.deepEqual(await perThread(second, t.pid), want, `${target}: the records' image`);
  const { dir } = await dumpKillRestore(t);
  assert.equal(statusFactPaths.get(t.pid), "bpf");
  assert.deepEqual(await perThread(dir, t.pid), want, `${target}: the restored image`);
  await Deno.writeTextFile(trigger, "");
  assertChecksPassed(t, [], await t.wait(15000), { what: `${target} ${extra.join(" ")}` });
}

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
        factsRoundTrip("rt_attrs", [], /^ready pid=(\d+)$/m, (facts, main) => {
          assert.ok(facts.some((f) => f.seccomp === 1), "a thread in strict mode");
          assert.ok(facts.some((f) => f.seccomp === 2), "a thread with filters");
          assert.ok(facts.some((f) => f.noNewPrivs));
          assert.ok(facts.filter((f) => f.realCred === main).length > 1, "stand-ins");
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

Deno.test("thread facts: without the records every status is read", () => {
  const tids = [Deno.pid];
  const m = threadStatuses(Deno.pid, tids, undefined);
  assert.equal(m.get(Deno.pid)!.pid, Deno.pid);
});

Deno.test("thread facts: a fact other than the status's is refuted for the boot; a trusted main thread that differs sends every thread to its status", () =>
  withMemoEnv({}, async () => {
    const pid = Deno.pid;
    const tids = [
      pid,
      ...[...Deno.readDirSync(`/proc/${pid}/task`)].map((e) => Number(e.name))
        .filter((t) => t !== pid).slice(0, 2),
    ];
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
      specFlags: new Map<number, number>(),
      threadKeyring: new Map<number, bigint>(),
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
