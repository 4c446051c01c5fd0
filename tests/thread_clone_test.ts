/**
 * The clone3 ops that create a process's threads (engine/restore/thread_clone.ts):
 * one per thread but the main one, in record order, each jumping to
 * `thread-park` in the child, with `clone_args` byte-equal to what
 * `cloneArgs.encode` gives for the thread (flags, clear-child-tid, set_tid
 * pointing at the thread's own tid). The threads are created for real in
 * tests/restore_threads_test.ts.
 */

import assert from "node:assert/strict";
import { decodeProgram, ProgramBuilder } from "../engine/program/builder.ts";
import { SYS } from "../ffi/sysno.ts";
import { CLONE, cloneArgs } from "../ffi/structs.ts";
import { emitThreadClones } from "../engine/restore/thread_clone.ts";
import type { ProcessImage } from "../engine/model.ts";

Deno.test("thread clones: one clone3 per non-main thread, clone_args as the codec encodes them", () => {
  const clears = ["0x0", "0x7f0000001990", "0x7ffffffff000", "0x1000", "0xffffffffffffffff"];
  const threads = [{ tid: 5000, clearChildTid: "0x7f00deadb000" }];
  for (let i = 0; i < 40; i++) {
    threads.push({ tid: 5001 + i * 7, clearChildTid: clears[i % clears.length] });
  }
  // The main thread need not come first.
  const proc = { pid: 5015, threads: [...threads, { tid: 5015, clearChildTid: "0x0" }] };
  const base = 0x40000n;
  const p = new ProgramBuilder(base);
  emitThreadClones(p, proc as unknown as ProcessImage);
  p.end("main program");
  p.label("thread-park");
  p.end("park");
  const built = p.build();
  const ops = built.ops;
  assert.deepEqual(
    decodeProgram(built.bytes, base).map((o) => o.nr),
    ops.map((o) => o.nr),
    "the encoded ops are the built ones",
  );
  const others = proc.threads.filter((t) => t.tid !== proc.pid);
  const clones = ops.filter((o) => o.nr === SYS.clone3);
  assert.equal(clones.length, others.length);
  clones.forEach((op, i) => {
    const t = others[i];
    assert.equal(op.comment, `thread ${t.tid}`);
    assert.equal(op.args[1], BigInt(cloneArgs.size));
    assert.equal(op.jumpIfZeroTo, ops.length - 1, "the child goes to thread-park");
    const at = Number(op.args[0] - base);
    const bytes = built.bytes.subarray(at, at + cloneArgs.size);
    const args = cloneArgs.decode(bytes);
    const setTidAt = Number(args.setTid - base);
    const tid = new DataView(built.bytes.buffer, setTidAt, 8).getBigUint64(0, true);
    assert.equal(tid, BigInt(t.tid), "set_tid points at the thread's tid");
    const clear = BigInt(t.clearChildTid);
    const flags = CLONE.VM | CLONE.FS | CLONE.FILES | CLONE.SIGHAND | CLONE.THREAD |
      CLONE.SYSVSEM | CLONE.PTRACE | (clear !== 0n ? CLONE.CHILD_CLEARTID : 0n);
    const want = cloneArgs.encode({
      flags,
      pidfd: 0n,
      childTid: clear,
      parentTid: 0n,
      exitSignal: 0n,
      stack: 0n,
      stackSize: 0n,
      tls: 0n,
      setTid: args.setTid,
      setTidSize: 1n,
      cgroup: 0n,
    });
    assert.deepEqual(bytes, want, `clone_args of thread ${t.tid}`);
  });
});

Deno.test("thread clones: nothing for a single-threaded process", () => {
  const p = new ProgramBuilder(0x40000n);
  const before = p.opCount;
  emitThreadClones(p, { pid: 7, threads: [{ tid: 7, clearChildTid: "0x0" }] } as never);
  assert.equal(p.opCount, before);
});
