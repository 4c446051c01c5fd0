/**
 * Per-thread state from a BPF task iterator (ffi/bpf_task.ts,
 * engine/proc/thread_state_bpf.ts, engine/dump/thread_state.ts): the
 * program's layout is the running kernel's; on frozen rt_threadstate, whose
 * threads each set their own sigaltstack, clear_child_tid, parent-death
 * signal, securebits and timer slack, the iterator's values equal the
 * injected ones and the target's own, thread by thread; a dump on the BPF
 * path (after the check that confirms it) restores the target with its
 * checks passing and records what the injected path records; forcing
 * injection and a small process stay on the injected path; the memo's
 * trust rules.
 */

import assert from "node:assert/strict";
import { Btf, BTF_KIND } from "../ffi/btf.ts";
import { ITER_TASK_PID_OFFSET } from "../ffi/bpf_task.ts";
import {
  flagsNeedStackPointer,
  loadThreadIterator,
  nearAltStack,
  readThreadRecords,
  sigaltstackFlags,
  taskStateLayout,
  threadIteratorUnavailable,
} from "../engine/proc/thread_state_bpf.ts";
import {
  bpfThreadStates,
  checkThreadStates,
  differs,
  mlockFutureOfFlags,
  takeMlockFuture,
  takeThreadStates,
  threadStateBpf,
  threadStatePaths,
  type ThreadValues,
} from "../engine/dump/thread_state.ts";
import { queryInjectedState, withInjection } from "../engine/dump/injected.ts";
import {
  recallThreadState,
  rememberThreadCheck,
  rememberThreadLayout,
  rememberThreadRefuted,
} from "../engine/proc/vm_flags_memo.ts";
import { freezeTree, thawTree } from "../engine/dump/freeze.ts";
import { checkpoint } from "../engine/dump/mod.ts";
import { probeMlockFuture } from "../engine/memory/flags.ts";
import { readImageFile } from "../engine/image/reader.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { dumpKillRestore, startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";
import { threadBpfTest, withMemoEnv } from "./helpers/thread_bpf.ts";

const READY = /^ready pid=(\d+)$/m;
const THREADS = 7;

/** The values each thread printed before its ready line, by tid. */
function printedValues(out: string): Map<number, ThreadValues> {
  const m = new Map<number, ThreadValues>();
  const re =
    /^thread (\d+) sp=(0x[0-9a-f]+) size=(\d+) flags=(-?\d+) ctid=(0x[0-9a-f]+) pdeath=(\d+) secbits=(\d+) slack=(\d+)$/gm;
  for (const x of out.matchAll(re)) {
    m.set(Number(x[1]), {
      sigaltstack: { sp: x[2], size: Number(x[3]), flags: Number(x[4]) },
      clearChildTid: x[5],
      pdeathsig: Number(x[6]),
      securebits: Number(x[7]),
      timerSlackNs: Number(x[8]),
      // rt_threadstate leaves these at their defaults.
      tsc: 1,
      personality: 0,
      mempolicy: 0,
    });
  }
  return m;
}

threadBpfTest(
  "thread state bpf: the program's layout and link info are the running kernel's",
  () => {
    const btf = Btf.vmlinux();
    const info = btf.find(BTF_KIND.UNION, "bpf_iter_link_info")!;
    const task = btf.resolve(btf.member(info, "task")!.type);
    assert.equal(btf.member(info, "task")!.offset, 0);
    assert.equal(btf.member(task, "pid")?.offset, ITER_TASK_PID_OFFSET);
    const l = taskStateLayout(btf);
    const ts = btf.find(BTF_KIND.STRUCT, "task_struct")!;
    assert.equal(l.timerSlackNs, btf.member(ts, "timer_slack_ns")!.offset);
    assert.equal(
      l.securebits,
      btf.member(btf.find(BTF_KIND.STRUCT, "cred")!, "securebits")!.offset,
    );
    assert.ok(loadThreadIterator(), `loads: ${threadIteratorUnavailable()}`);
  },
);

threadBpfTest(
  "thread state bpf: on frozen rt_threadstate the iterator's values are the injected ones and the target's own, thread by thread",
  withTargets(() =>
    withMemoEnv({ CRYO_THREADSTATE: "bpf" }, async () => {
      const { t } = await startTriggered("rt_threadstate", READY);
      const printed = printedValues(t.output());
      assert.equal(printed.size, THREADS, t.output());
      const tree = freezeTree(t.pid);
      try {
        const tids = tree.processes[0].threads;
        assert.equal(readThreadRecords(t.pid).length, THREADS);
        const bpf = bpfThreadStates(t.pid, tids);
        assert.ok(bpf, threadStatePaths.get(t.pid));
        assert.equal(bpf.trusted, false, "nothing confirmed on a fresh memo");
        Deno.env.set("CRYO_THREADSTATE", "inject");
        const injected = withInjection(t.pid, (s) => queryInjectedState(s, tids)).threads;
        assert.equal(threadStatePaths.get(t.pid), "inject: forced");
        for (const tid of tids) {
          const b: ThreadValues = bpf.states.get(tid)!;
          const inj: ThreadValues = injected.get(tid)!;
          const own: ThreadValues = printed.get(tid)!;
          assert.equal(differs(b, inj), undefined, `thread ${tid} against the injected values`);
          assert.equal(differs(b, own), undefined, `thread ${tid} against its own values`);
        }
        // The target's threads set every field somewhere (SS_AUTODISARM included).
        assert.deepEqual([...bpf.set].sort(), [
          "clear_child_tid",
          "pdeath_signal",
          "sas_ss_flags",
          "sas_ss_size",
          "sas_ss_sp",
          "securebits",
          "timer_slack_ns",
        ]);
      } finally {
        thawTree(tree);
        await t.kill();
      }
    })
  ),
);

threadBpfTest(
  "thread state bpf: the check confirms, the next dump takes the iterator's values, and the restored target finds its own",
  withTargets(() =>
    withMemoEnv({ CRYO_THREADSTATE: "bpf" }, async () => {
      const { t, trigger } = await startTriggered("rt_threadstate", READY);
      const first = await tempImageDir();
      await checkpoint(t.pid, { dir: first, leaveRunning: true });
      assert.equal(threadStatePaths.get(t.pid), "bpf: checked");
      assert.equal(recallThreadState()?.checked, true, "remembered");
      const { dir } = await dumpKillRestore(t);
      assert.equal(threadStatePaths.get(t.pid), "bpf");
      // The same per-thread state as the checked (injected) dump's.
      const pick = async (d: string) =>
        (await readImageFile(`${d}/${t.pid}.elf`)).process.threads.map((th) => ({
          tid: th.tid,
          sigaltstack: th.sigaltstack,
          clearChildTid: th.clearChildTid,
          attrs: th.attrs,
          sched: th.sched,
          creds: th.creds,
        }));
      assert.deepEqual(await pick(dir), await pick(first));
      await Deno.writeTextFile(trigger, "");
      assertChecksPassed(
        t,
        Array.from({ length: THREADS }, (_, i) => `thread${i}`),
        await t.wait(15000),
        { what: "rt_threadstate on the BPF path" },
      );
    })
  ),
);

threadBpfTest(
  "thread state bpf: a thread waiting in a handler on its alternate stack sends the process to injection, and it restores",
  withTargets(() =>
    withMemoEnv({ CRYO_THREADSTATE: "bpf" }, async () => {
      const { t, trigger } = await startTriggered("rt_threadstate", READY, { extra: ["onstack"] });
      const onStack = [...printedValues(t.output())].filter(([, v]) => v.sigaltstack.flags === 1);
      assert.equal(onStack.length, 1, t.output());
      await dumpKillRestore(t);
      assert.equal(
        threadStatePaths.get(t.pid),
        `inject: thread ${onStack[0][0]}'s stack pointer is on or near its sigaltstack`,
      );
      await Deno.writeTextFile(trigger, "");
      assertChecksPassed(
        t,
        Array.from({ length: THREADS }, (_, i) => `thread${i}`),
        await t.wait(15000),
        { what: "rt_threadstate onstack" },
      );
    })
  ),
);

Deno.test(
  "thread state bpf: forced injection and a process with few threads stay on the injected path, and restore",
  withTargets(() =>
    withMemoEnv({}, async () => {
      const { t, trigger } = await startTriggered("rt_threadstate", READY);
      const dir = await tempImageDir();
      await checkpoint(t.pid, { dir, leaveRunning: true });
      assert.ok(THREADS < threadStateBpf.minThreads);
      assert.equal(threadStatePaths.get(t.pid), "inject: few threads");
      Deno.env.set("CRYO_THREADSTATE", "inject");
      await dumpKillRestore(t);
      assert.equal(threadStatePaths.get(t.pid), "inject: forced");
      await Deno.writeTextFile(trigger, "");
      assertChecksPassed(
        t,
        Array.from({ length: THREADS }, (_, i) => `thread${i}`),
        await t.wait(15000),
        { what: "rt_threadstate injected" },
      );
    })
  ),
);

threadBpfTest(
  "thread state bpf: the memo is trusted only when checked on this boot, private, and confirming every field the process sets",
  withTargets(() =>
    withMemoEnv({ CRYO_THREADSTATE: "bpf" }, async () => {
      const memoPath = `${Deno.env.get("CRYO_CACHE_DIR")}/vmflags/${
        Deno.readTextFileSync("/proc/sys/kernel/random/boot_id").trim()
      }.json`;
      const { t } = await startTriggered("rt_threadstate", READY);
      const tree = freezeTree(t.pid);
      try {
        const tids = tree.processes[0].threads;
        const trusted = () => bpfThreadStates(t.pid, tids)!.trusted;
        assert.equal(trusted(), false, "no check yet");
        // A check that saw fewer fields: what the target sets beyond them is not trusted.
        rememberThreadCheck(["clear_child_tid", "timer_slack_ns"]);
        assert.equal(trusted(), false, "securebits and the rest never confirmed");
        rememberThreadCheck(bpfThreadStates(t.pid, tids)!.set);
        assert.equal(trusted(), true);
        // Writable by others: not trusted.
        Deno.chmodSync(memoPath, 0o666);
        assert.equal(recallThreadState(), undefined);
        assert.equal(trusted(), false);
        Deno.chmodSync(memoPath, 0o600);
        assert.equal(trusted(), true);
        // Another boot's memo.
        const text = Deno.readTextFileSync(memoPath);
        Deno.writeTextFileSync(memoPath, text.replace(/"boot":"[^"]*"/, '"boot":"another"'));
        assert.equal(recallThreadState(), undefined);
        assert.equal(trusted(), false);
        Deno.writeTextFileSync(memoPath, text);
        // A damaged layout is not used (the check stays).
        const layout = taskStateLayout(Btf.vmlinux());
        rememberThreadLayout(layout);
        assert.deepEqual(recallThreadState()?.layout, layout);
        rememberThreadLayout({ ...layout, securebits: -4 });
        assert.equal(recallThreadState()?.layout, undefined);
        assert.equal(recallThreadState()?.checked, true);
        // A difference found on this boot: the iterator is not read again.
        rememberThreadRefuted("thread 1: timer slack 1 (iterator) != 2 (injected)");
        assert.equal(bpfThreadStates(t.pid, tids), undefined);
        assert.match(
          threadStatePaths.get(t.pid)!,
          /^inject: a check on this boot found a difference/,
        );
        Deno.writeTextFileSync(memoPath, text);
        assert.equal(trusted(), true);
        // Memo off: nothing recalled, nothing trusted.
        Deno.env.set("CRYO_VMFLAGS_MEMO", "0");
        assert.equal(trusted(), false);
      } finally {
        Deno.env.delete("CRYO_VMFLAGS_MEMO");
        thawTree(tree);
        await t.kill();
      }
    })
  ),
);

Deno.test("thread state bpf: sigaltstack's flags derived as the kernel reports them", () => {
  const rec = (sp: bigint, size: bigint, flags: number) => ({
    tid: 1,
    tgid: 1,
    sasSsSp: sp,
    sasSsSize: size,
    sasSsFlags: flags,
    pdeathSignal: 0,
    clearChildTid: 0n,
    timerSlackNs: 0n,
    securebits: 0,
    credRead: true,
    defFlags: 0n,
    mmRead: true,
    realCred: 0n,
    atomicFlags: 0n,
    seccompMode: 0,
    flags: 0,
    credBytes: new Uint8Array(96),
    credBytesRead: false,
    groupInfo: 0n,
    ngroups: 0,
    groupsRead: false,
    comm: new Uint8Array(),
    task: 0n,
    childrenNext: 0n,
    tifFlags: 0,
    personality: 0,
    mempolicy: 0n,
    nsproxy: 0n,
    threadKeyring: 0n,
    fs: 0n,
    files: 0n,
    cgroups: 0n,
    loginuid: 4294967295,
    sessionid: 4294967295,
    lsmBytes: new Uint8Array(64),
    lsmRead: false,
  });
  const AUTODISARM = 0x80000000 | 0;
  // No size: SS_DISABLE whatever the stored flags (a disabled stack keeps its SS_DISABLE).
  assert.equal(sigaltstackFlags(rec(0n, 0n, 0), undefined), 2);
  assert.equal(sigaltstackFlags(rec(0n, 0n, 2), undefined), 2);
  assert.equal(sigaltstackFlags(rec(0n, 0n, AUTODISARM), undefined), 2 | AUTODISARM);
  // A stack: SS_ONSTACK when sp < rsp <= sp + size.
  const r = rec(0x1000n, 0x1000n, 0);
  assert.equal(sigaltstackFlags(r, 0x1000n), 0);
  assert.equal(sigaltstackFlags(r, 0x1001n), 1);
  assert.equal(sigaltstackFlags(r, 0x2000n), 1);
  assert.equal(sigaltstackFlags(r, 0x2001n), 0);
  assert.throws(() => sigaltstackFlags(r, undefined));
  // Auto-disarmed: never on the stack, the bit reported.
  assert.equal(sigaltstackFlags(rec(0x1000n, 0x1000n, AUTODISARM), 0x1800n), AUTODISARM);
  assert.equal(flagsNeedStackPointer(rec(0x1000n, 0x1000n, AUTODISARM)), false);
  assert.equal(flagsNeedStackPointer(r), true);
  // Near: on it, or up to the margin above it.
  assert.equal(nearAltStack(r, 0x1800n, 0x100n), true);
  assert.equal(nearAltStack(r, 0x2100n, 0x100n), true);
  assert.equal(nearAltStack(r, 0x2101n, 0x100n), false);
  assert.equal(nearAltStack(r, 0x1000n, 0x100n), false);
});

Deno.test("thread state bpf: a main thread whose injected values differ sends the other threads to injection, and a difference is remembered for the boot", () =>
  withMemoEnv({}, async () => {
    const v = (slack: number): ThreadValues => ({
      sigaltstack: { sp: "0x0", flags: 2, size: 0 },
      clearChildTid: "0x10",
      pdeathsig: 0,
      securebits: 0,
      timerSlackNs: slack,
      tsc: 1,
      personality: 0,
      mempolicy: 0,
    });
    const bpf = {
      pid: 10,
      states: new Map([[10, v(50000)], [11, v(50000)]]),
      set: new Set(["clear_child_tid", "timer_slack_ns"]),
      trusted: true,
      facts: new Map(),
      factsSet: new Set<string>(),
      factsTrusted: false,
      nsproxy: new Map<number, bigint>(),
      fs: new Map<number, bigint>(),
      files: new Map<number, bigint>(),
      cssSets: new Map<number, bigint>(),
      loginIds: new Map(),
      specFlags: new Map<number, number>(),
      threadKeyring: new Map<number, bigint>(),
      records: [],
    };
    const threads = new Map([[10, v(1)]]);
    assert.equal(takeThreadStates(bpf, threads), false);
    assert.match(threadStatePaths.get(10)!, /^inject: main thread: timer slack 50000/);
    assert.equal(threads.has(11), false);
    threads.set(10, v(50000));
    assert.equal(takeThreadStates(bpf, threads), true);
    assert.deepEqual(threads.get(11), v(50000));
    assert.equal(threadStatePaths.get(10), "bpf");
    assert.match(recallThreadState()!.refuted!, /^process 10 main thread: timer slack/);
    // The check: one thread's difference is reported and remembered.
    assert.match(checkThreadStates(bpf, new Map([[10, v(50000)], [11, v(7)]]))!, /thread 11/);
    assert.match(recallThreadState()!.refuted!, /^process 10 thread 11: timer slack 50000/);
    assert.equal(recallThreadState()!.checked, false);
    await Promise.resolve();
  }));

threadBpfTest(
  "thread state bpf: mlockall(MCL_FUTURE) from the iterator's mm->def_flags is the probe's, and a trusted dump records the same",
  withTargets(() =>
    withMemoEnv({ CRYO_THREADSTATE: "bpf" }, async () => {
      const cases: [string[], "locked" | "onfault" | undefined, string[]][] = [
        [[], undefined, []],
        [["future"], "locked", ["mlock_future"]],
        [["future-onfault"], "onfault", ["mlock_future", "mlock_onfault"]],
      ];
      for (const [extra, want, fields] of cases) {
        const { t, trigger } = await startTriggered("rt_threadstate", READY, { extra });
        const tree = freezeTree(t.pid);
        try {
          const tids = tree.processes[0].threads;
          const bpf = bpfThreadStates(t.pid, tids);
          assert.ok(bpf?.mlockFuture, threadStatePaths.get(t.pid));
          const probed = withInjection(t.pid, (s) => probeMlockFuture(s));
          assert.equal(probed, want, `${extra}: the probe`);
          assert.equal(bpf.mlockFuture.value, probed, `${extra}: the iterator against the probe`);
          for (const f of ["mlock_future", "mlock_onfault"]) {
            assert.equal(bpf.set.has(f), fields.includes(f), `${extra}: ${f}`);
          }
        } finally {
          thawTree(tree);
        }
        // The first dump checks (the probe made and compared), the second takes the iterator's.
        const first = await tempImageDir();
        await checkpoint(t.pid, { dir: first, leaveRunning: true });
        assert.equal(threadStatePaths.get(t.pid), "bpf: checked", `${extra}`);
        const second = await tempImageDir();
        await checkpoint(t.pid, { dir: second, leaveRunning: true });
        assert.equal(threadStatePaths.get(t.pid), "bpf", `${extra}`);
        for (const d of [first, second]) {
          const img = (await readImageFile(`${d}/${t.pid}.elf`)).process;
          assert.equal(img.memoryFlags?.mlockFuture, want, `${extra}: ${d}`);
        }
        await Deno.writeTextFile(trigger, "");
        assertChecksPassed(
          t,
          Array.from({ length: THREADS }, (_, i) => `thread${i}`),
          await t.wait(15000),
          { what: `rt_threadstate ${extra.join(" ")}` },
        );
      }
    })
  ),
);

Deno.test("thread state bpf: an mlockall(MCL_FUTURE) the probe does not confirm is refuted for the boot, and the probe's value kept", () =>
  withMemoEnv({}, async () => {
    assert.equal(mlockFutureOfFlags(0n), undefined);
    assert.equal(mlockFutureOfFlags(0x2000n), "locked");
    assert.equal(mlockFutureOfFlags(0x2000n | 0x80000n), "onfault");
    assert.equal(mlockFutureOfFlags(0x80000n), undefined);
    let probes = 0;
    const probe = (v: "locked" | "onfault" | undefined) => () => (probes++, v);
    // Trusted: the iterator's value, no probe.
    assert.equal(
      takeMlockFuture(20, { value: "locked", trusted: true }, probe(undefined)),
      "locked",
    );
    assert.equal(probes, 0);
    // No iterator: the probe.
    assert.equal(takeMlockFuture(20, undefined, probe("onfault")), "onfault");
    // Not trusted, equal: the probe's value, nothing refuted.
    assert.equal(
      takeMlockFuture(20, { value: "locked", trusted: false }, probe("locked")),
      "locked",
    );
    assert.equal(recallThreadState()?.refuted, undefined);
    // Not trusted, different: the probe's value, refuted for the boot.
    assert.equal(
      takeMlockFuture(20, { value: undefined, trusted: false }, probe("locked")),
      "locked",
    );
    assert.equal(probes, 3);
    assert.match(
      threadStatePaths.get(20)!,
      /^inject: mlockall\(MCL_FUTURE\) none \(iterator\) != locked/,
    );
    assert.match(recallThreadState()!.refuted!, /^process 20: mlockall/);
    await Promise.resolve();
  }));
