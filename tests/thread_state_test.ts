/**
 * The per-thread sections of a restore program (engine/restore/thread_state.ts):
 * one per thread but the main one, each ending at an END, with exactly the
 * syscalls the thread's record asks for, in order. The sections run for
 * real in tests/restore_threads_test.ts (robust list, rseq, sigaltstack,
 * names) and tests/restore_taskstate_test.ts (signals queued to a thread).
 */

import assert from "node:assert/strict";
import { decodeProgram, OP_COPY, OP_END, ProgramBuilder } from "../engine/program/builder.ts";
import { SYS } from "../ffi/sysno.ts";
import { chainedCreds, emitThreadSections, slacksOf } from "../engine/restore/thread_state.ts";
import {
  checkSchedsReadInRuns,
  RUN_AREA_BYTES,
  schedFromRun,
  schedMatchesRun,
} from "../engine/task/sched_run.ts";
import { collectSched, schedDifferences, type ThreadSched } from "../engine/task/sched.ts";
import { Rng } from "../scripts/fuzz/mutate.ts";
import { rawSyscall } from "../ffi/libc.ts";
import type { ProcessImage } from "../engine/model.ts";

/** The threads' sections of `proc` in a program at `base` after its main part, built and decoded. */
function threadProgram(proc: ProcessImage, base: bigint) {
  const p = new ProgramBuilder(base);
  p.end("main program");
  const sections = emitThreadSections(p, proc);
  const built = p.build();
  return { sections, built, ops: decodeProgram(built.bytes, base) };
}

/** The fields of a thread record the sections read. */
function thread(tid: number, extra: Record<string, unknown> = {}) {
  return {
    tid,
    comm: `worker-${tid}-with-a-long-name`,
    robustList: { head: "0x0", len: 24 },
    rseq: null,
    sigaltstack: { sp: "0x0", flags: 2, size: 0 },
    pending: [],
    ...extra,
  };
}

Deno.test("thread sections: one per non-main thread, only what each record asks for", () => {
  const siginfo = btoa(String.fromCharCode(...new Uint8Array(128)));
  const proc = {
    pid: 100,
    threads: [
      thread(100, { robustList: { head: "0x7000", len: 24 } }), // the main thread: its program's
      thread(101),
      thread(102, {
        robustList: { head: "0x7f0000001000", len: 24 },
        rseq: { addr: "0x7f0000002000", len: 32, sig: "0x53053053", flags: 0 },
        sigaltstack: { sp: "0x7f0000010000", flags: 1, size: 8192 },
        pending: [
          { signo: 10, code: -6, raw: siginfo },
          { signo: 19, code: 0, raw: siginfo }, // SIGSTOP: sent at release (stopped.ts)
          { signo: 5, code: 0, raw: siginfo }, // SIGTRAP: queued last (sigtrap.ts)
        ],
      }),
    ],
  } as unknown as ProcessImage;
  const base = 0x10000n;
  const { sections, built, ops } = threadProgram(proc, base);
  assert.deepEqual(sections.map((s) => s.tid), [101, 102]);
  const section = (i: number) => {
    const out = [];
    for (let k = sections[i].op; ops[k].nr !== OP_END; k++) out.push(ops[k]);
    return out;
  };
  // 101: its name only (then its timer slack read back, as every section).
  const a = section(0);
  assert.deepEqual(a.map((o) => o.nr), [SYS.prctl, SYS.prctl]);
  assert.deepEqual(a[0].args[0], 15n); // PR_SET_NAME
  // 102: robust list, rseq, sigaltstack (SS_ONSTACK dropped), SIGUSR1 queued to itself, name.
  const b = section(1);
  assert.deepEqual(b.map((o) => o.nr), [
    SYS.set_robust_list,
    SYS.rseq,
    SYS.sigaltstack,
    SYS.rt_tgsigqueueinfo,
    SYS.prctl,
    SYS.prctl,
  ]);
  assert.deepEqual(b[0].args.slice(0, 2), [0x7f0000001000n, 24n]);
  assert.deepEqual(b[1].args.slice(0, 4), [0x7f0000002000n, 32n, 0n, 0x53053053n]);
  const ss = new DataView(built.bytes.buffer, Number(b[2].args[0] - base), 24);
  assert.deepEqual(ss.getBigUint64(0, true), 0x7f0000010000n);
  assert.deepEqual(ss.getInt32(8, true), 0); // flags & ~SS_ONSTACK
  assert.deepEqual(ss.getBigUint64(16, true), 8192n);
  assert.deepEqual(b[3].args.slice(0, 3), [100n, 102n, 10n]);
  const name = built.bytes.subarray(Number(b[4].args[1] - base));
  assert.deepEqual(new TextDecoder().decode(name.subarray(0, name.indexOf(0))), "worker-102-with");
  // Last: PR_GET_TIMERSLACK into slot 0 of the run's own slots (any result: the engine checks it).
  for (const ops of [a, b]) {
    const read = ops[ops.length - 1];
    assert.deepEqual(read.args[0], 30n); // PR_GET_TIMERSLACK
    assert.equal(read.store, 0);
    assert.equal(read.allowFail, true);
  }
  // Each run's area: RUN_AREA_BYTES each, one after the other, inside the program's data.
  const size = BigInt(RUN_AREA_BYTES);
  assert.equal(sections[1].slots, sections[0].slots + size);
  const area = built.bytes.subarray(
    Number(sections[0].slots - base),
    Number(sections[1].slots - base) + RUN_AREA_BYTES,
  );
  assert.ok(area.every((b) => b === 0xff)); // no record's slack until a run stores one
  assert.ok(
    sections[0].slots >= base && sections[1].slots + size <= base + BigInt(built.bytes.length),
  );
  // No scheduling recorded: none read in the run.
  assert.deepEqual(sections.map((s) => s.schedRead), [false, false]);
});

Deno.test("thread sections: each name is the bytes cstring writes, for PR_SET_NAME's first 16", () => {
  // ASCII names share one block (16 bytes each); any other character: cstring as before.
  const names = [
    "",
    "a",
    "worker",
    "exactly-15-char",
    "longer-than-fifteen",
    "caf\u00e9-\u00fcber-long",
    "x\u{1F600}y",
  ];
  const proc = {
    pid: 200,
    threads: [thread(200), ...names.map((comm, i) => thread(201 + i, { comm }))],
  } as unknown as ProcessImage;
  const base = 0x20000n;
  const { sections, built, ops } = threadProgram(proc, base);
  sections.forEach((s, i) => {
    let k = s.op;
    while (!(ops[k].nr === SYS.prctl && ops[k].args[0] === 15n)) k++;
    const at = Number(ops[k].args[1] - base);
    // The kernel copies at most 15 bytes, up to a NUL: those of a cstring of the name.
    const kernelReads = (b: Uint8Array) => {
      const f = b.subarray(0, 15);
      const end = f.indexOf(0);
      return [...(end < 0 ? f : f.subarray(0, end))];
    };
    const want = kernelReads(new TextEncoder().encode(names[i].slice(0, 15) + "\0"));
    const have = kernelReads(built.bytes.subarray(at, at + 16));
    assert.deepEqual(have, want, `name of thread ${s.tid}`);
  });
});

Deno.test("thread sections go on into each thread's credentials section: one run per thread", () => {
  const proc = {
    pid: 100,
    threads: [thread(100), thread(101), thread(102)],
  } as unknown as ProcessImage;
  const base = 0x10000n;
  const p = new ProgramBuilder(base);
  p.end("main program");
  // Stand-ins for the credentials sections (engine/task/creds.ts): 101 and 102 share one.
  const main = p.opCount;
  p.end("credentials of 100");
  const shared = p.opCount;
  p.end("credentials of 101 and 102");
  const creds = {
    threads: [{ tid: 100, op: main }, { tid: 101, op: shared }, { tid: 102, op: shared }],
  };
  const sections = emitThreadSections(p, proc, new Map(creds.threads.map((t) => [t.tid, t.op])));
  const ops = decodeProgram(p.build().bytes, base);
  for (const s of sections) {
    // Its own state (here its name), its timer slack read back, then an empty copy that
    // always jumps to its credentials.
    const [name, slack, jump] = [ops[s.op], ops[s.op + 1], ops[s.op + 2]];
    assert.equal(name.nr, SYS.prctl);
    assert.equal(slack.nr, SYS.prctl);
    assert.equal(jump.nr, OP_COPY);
    assert.deepEqual(jump.args.slice(0, 3), [0n, 0n, 0n]);
    assert.equal(jump.jumpIfZeroTo, shared);
  }
  const runs = chainedCreds(creds, sections);
  assert.deepEqual(runs.threads, [
    { tid: 100, op: main }, // the main thread's own state is its program's
    { tid: 101, op: sections[0].op },
    { tid: 102, op: sections[1].op },
  ]);
});

/** A fair-policy scheduling record. */
function fairSched(extra: Partial<ThreadSched> = {}): ThreadSched {
  return {
    policy: 0,
    flags: 0,
    priority: 0,
    nice: 0,
    runtime: "0",
    deadline: "0",
    period: "0",
    utilMin: 0,
    utilMax: 1024,
    cpus: [0, 1],
    timerSlackNs: 50000,
    ioprio: 0,
    ...extra,
  };
}

Deno.test("thread sections: a fair-policy thread reads its scheduling into its own area", () => {
  const proc = {
    pid: 100,
    threads: [
      thread(100, { sched: fairSched() }),
      thread(101, { sched: fairSched({ policy: 3, nice: 5 }) }), // BATCH
      thread(102, { sched: fairSched({ policy: 1, priority: 10 }) }), // FIFO: read from cryo
      thread(103, { sched: fairSched({ policy: 5 }) }), // IDLE
    ],
  } as unknown as ProcessImage;
  const base = 0x10000n;
  const { sections, ops } = threadProgram(proc, base);
  assert.deepEqual(sections.map((s) => [s.tid, s.schedRead]), [[101, true], [102, false], [
    103,
    true,
  ]]);
  for (const s of sections) {
    const own = [];
    for (let k = s.op; ops[k].nr !== OP_END; k++) own.push(ops[k]);
    const reads = own.filter((o) =>
      ([SYS.sched_getattr, SYS.sched_getaffinity, SYS.ioprio_get] as number[]).includes(o.nr)
    );
    if (!s.schedRead) {
      assert.equal(reads.length, 0);
      continue;
    }
    // After the timer slack, in the thread's own area (its r12), each allowed to fail.
    assert.deepEqual(own.map((o) => o.nr).slice(-4), [
      SYS.prctl,
      SYS.sched_getattr,
      SYS.sched_getaffinity,
      SYS.ioprio_get,
    ]);
    const [attr, mask, io] = reads;
    assert.deepEqual([attr.store, mask.store, io.store], [1, 2, 3]);
    assert.ok(reads.every((o) => o.allowFail));
    assert.deepEqual(attr.args.slice(0, 4), [0n, s.slots + 32n, 56n, 0n]); // pid 0: the thread
    assert.deepEqual(mask.args.slice(0, 3), [0n, 128n, s.slots + 96n]);
    assert.deepEqual(io.args.slice(0, 2), [1n, 0n]); // IOPRIO_WHO_PROCESS, itself
    assert.ok(s.slots + 96n + 128n <= s.slots + BigInt(RUN_AREA_BYTES));
  }
});

/** The area a thread's run fills, made from cryo's own reads of thread `tid` (same syscalls). */
function areaOf(tid: number, slack: bigint): DataView {
  const buf = new Uint8Array(RUN_AREA_BYTES).fill(0xff);
  const view = new DataView(buf.buffer);
  view.setBigInt64(0, slack, true);
  view.setBigInt64(8, rawSyscall(SYS.sched_getattr, tid, buf.subarray(32), 56, 0), true);
  view.setBigInt64(16, rawSyscall(SYS.sched_getaffinity, tid, 128, buf.subarray(96)), true);
  view.setBigInt64(24, rawSyscall(SYS.ioprio_get, 1, tid), true);
  return view;
}

Deno.test("scheduling read in the run: decoded as collectSched reads it; failed reads go from cryo", () => {
  const tid = Deno.pid;
  const live = collectSched(tid);
  const view = areaOf(tid, BigInt(live.timerSlackNs));
  assert.deepEqual(schedFromRun(view), live);
  assert.deepEqual(slacksOf(new Map([[tid, view]])), new Map([[tid, BigInt(live.timerSlackNs)]]));
  // A read that failed or did not run: nothing decoded.
  for (const slot of [0, 1, 2, 3]) {
    const bad = new DataView(view.buffer.slice(0));
    bad.setBigInt64(8 * slot, -22n, true);
    assert.equal(schedFromRun(bad), undefined, `slot ${slot} failed`);
  }
  const untouched = new DataView(new Uint8Array(RUN_AREA_BYTES).fill(0xff).buffer);
  assert.equal(schedFromRun(untouched), undefined);
  // As recorded: nothing set. A record that differs, or reads that failed: the whole way from
  // cryo (restoreSched), which finds this thread as recorded or sets it (here: as it is).
  const me = { tid, sched: live };
  checkSchedsReadInRuns(tid, [me], new Map([[tid, view]]));
  checkSchedsReadInRuns(tid, [me], new Map([[tid, untouched]]));
  // A record this host cannot give fails naming the thread.
  assert.throws(
    () =>
      checkSchedsReadInRuns(
        tid,
        [{ tid, sched: { ...live, cpus: [1000] } }],
        new Map([[tid, view]]),
      ),
    new RegExp(
      `cannot restore the scheduling of thread ${tid} of process ${tid}: sched_setaffinity`,
    ),
  );
  assert.deepEqual(collectSched(tid), live, "left as it was");
});

Deno.test("scheduling read in the run: the byte comparison says equal only where the decoded state has no difference", () => {
  const tid = Deno.pid;
  const live = collectSched(tid);
  const base = areaOf(tid, BigInt(live.timerSlackNs));
  const reference = (view: DataView, want: ThreadSched) => {
    const now = schedFromRun(view);
    return now !== undefined && schedDifferences(now, want).length === 0;
  };
  assert.ok(schedMatchesRun(base, live));
  assert.ok(reference(base, live));
  const rng = new Rng(0x5c4e);
  const pick = <T>(xs: T[]): T => xs[rng.int(xs.length)];
  let same = 0, other = 0;
  for (let i = 0; i < 6000; i++) {
    const view = new DataView(base.buffer.slice(0));
    const want: Record<string, unknown> = { ...live, cpus: [...live.cpus] };
    // Damage the bytes the run wrote, the record, or both.
    for (let k = rng.int(3); k > 0; k--) {
      const at = pick([
        0,
        8,
        16,
        24,
        32 + 4,
        32 + 8,
        32 + 16,
        32 + 20,
        32 + 24,
        32 + 48,
        32 + 52,
        96,
      ]);
      view.setUint8(at + rng.int(8), pick([0, 1, 2, 3, 5, 0x80, 0xff]));
    }
    for (let k = rng.int(3); k > 0; k--) {
      const key = pick(Object.keys(live));
      const v = want[key];
      want[key] = typeof v === "number"
        ? pick([v + 1, v - 1, 0, 1, 3, 5, -1, 1.5, 2 ** 60])
        : typeof v === "string"
        ? pick(["0", "1", "00", "18446744073709551615", ""])
        : pick([[], [0], [1], [0, 1], [1, 0], [0, 0], [...live.cpus, 2]]);
    }
    if (rng.int(20) === 0) want.extra = 1;
    const fast = schedMatchesRun(view, want as unknown as ThreadSched);
    const ref = reference(view, want as unknown as ThreadSched);
    assert.equal(fast, ref, `${JSON.stringify(want)}`);
    if (fast) same++;
    else other++;
  }
  assert.ok(same > 100 && other > 1000, `${same} equal, ${other} not`);
});
