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
import { chainedCreds, emitThreadSections } from "../engine/restore/thread_state.ts";
import type { ProcessImage } from "../engine/model.ts";

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
  const p = new ProgramBuilder(base);
  p.end("main program");
  const sections = emitThreadSections(p, proc);
  const built = p.build();
  const ops = decodeProgram(built.bytes, base);
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
  // Each run's slots: 8 bytes each, one after the other, inside the program's data.
  assert.equal(sections[1].slots, sections[0].slots + 8n);
  const area = built.bytes.subarray(
    Number(sections[0].slots - base),
    Number(sections[1].slots - base) + 8,
  );
  assert.ok(area.every((b) => b === 0xff)); // no record's slack until a run stores one
  assert.ok(
    sections[0].slots >= base && sections[1].slots + 8n <= base + BigInt(built.bytes.length),
  );
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
