/**
 * ffi/sigchld_wake.ts and ffi/wait.ts `napUntilSignal`: the restore
 * session's nap ends at a child's state change when the do-nothing SIGCHLD
 * handler is in, and the handler goes again (or is never put over someone
 * else's disposition).
 *
 * @module
 */

import assert from "node:assert/strict";
import { rawSyscall } from "../ffi/libc.ts";
import { SYS } from "../ffi/sysno.ts";
import { kernelSigaction } from "../ffi/structs.ts";
import { posixSpawn } from "../ffi/spawn.ts";
import { napUntilSignal, waitPid } from "../ffi/wait.ts";
import { sigchldWakes, wakeOnSigchld } from "../ffi/sigchld_wake.ts";

/** SIGCHLD's handler address now (0: SIG_DFL). */
function sigchldHandler(): bigint {
  const old = new Uint8Array(kernelSigaction.size);
  assert.equal(rawSyscall(SYS.rt_sigaction, 17, 0, old, 8), 0n);
  return kernelSigaction.decode(old).handler;
}

Deno.test("wakeOnSigchld: put in over SIG_DFL only, and taken back", () => {
  const before = sigchldHandler();
  const unwake = wakeOnSigchld();
  try {
    if (before === 0n) assert.notEqual(sigchldHandler(), 0n, "a handler while it is on");
    else assert.equal(sigchldHandler(), before, "someone else's disposition left as it is");
    // A second one sees a disposition that is not SIG_DFL: it changes nothing.
    const during = sigchldHandler();
    const again = wakeOnSigchld();
    assert.equal(sigchldHandler(), during);
    again();
    assert.equal(sigchldHandler(), during);
  } finally {
    unwake();
  }
  assert.equal(sigchldHandler(), before);
});

Deno.test("sigchldWakes: true with a handler in, false at SIG_DFL and SIG_IGN", () => {
  const before = sigchldHandler();
  const unwake = wakeOnSigchld();
  try {
    assert.equal(sigchldWakes(), sigchldHandler() > 1n);
    if (before === 0n) assert.equal(sigchldWakes(), true, "the do-nothing handler wakes");
  } finally {
    unwake();
  }
  if (before !== 0n) return; // someone else's disposition: not changed here
  assert.equal(sigchldWakes(), false, "SIG_DFL: the signal is discarded, a nap runs its time");
  const old = new Uint8Array(kernelSigaction.size);
  const ign = kernelSigaction.encode({ handler: 1n, flags: 0n, restorer: 0n, mask: 0n });
  assert.equal(rawSyscall(SYS.rt_sigaction, 17, ign, old, 8), 0n);
  try {
    assert.equal(sigchldWakes(), false, "SIG_IGN");
  } finally {
    assert.equal(rawSyscall(SYS.rt_sigaction, 17, old, 0, 8), 0n);
  }
  assert.equal(sigchldHandler(), 0n);
});

Deno.test("napUntilSignal: a child's exit ends the nap once wakeOnSigchld is on", () => {
  const unwake = wakeOnSigchld();
  let pid = 0;
  try {
    pid = posixSpawn("/bin/sleep", ["sleep", "0.1"], { env: [] });
    const t0 = performance.now();
    // The exit comes ~0.1 s in; the nap asks for 3 s (every signal ends it: loop past others).
    while (performance.now() - t0 < 3000) {
      napUntilSignal(3000);
      if (waitPid(pid, 1 /* WNOHANG */).kind !== "none") {
        pid = 0;
        break;
      }
    }
    const took = performance.now() - t0;
    assert.equal(pid, 0, "the child was reaped");
    assert.ok(took < 1500, `the nap ended at the child's exit (${took.toFixed(0)} ms)`);
  } finally {
    unwake();
    if (pid) {
      rawSyscall(SYS.kill, pid, 9);
      waitPid(pid, 0);
    }
  }
});

Deno.test("wakeOnSigchld: a disposition put in over it since is not undone", () => {
  if (sigchldHandler() !== 0n) return; // someone's handler: nothing is put in (first test)
  const old = new Uint8Array(kernelSigaction.size);
  assert.equal(rawSyscall(SYS.rt_sigaction, 17, 0, old, 8), 0n);
  const unwake = wakeOnSigchld();
  try {
    // Another disposition over it (SIG_IGN here; no child of this test exists meanwhile).
    const ign = kernelSigaction.encode({ handler: 1n, flags: 0n, restorer: 0n, mask: 0n });
    assert.equal(rawSyscall(SYS.rt_sigaction, 17, ign, 0, 8), 0n);
    unwake();
    assert.equal(sigchldHandler(), 1n, "the later disposition stays");
  } finally {
    rawSyscall(SYS.rt_sigaction, 17, old, 0, 8); // SIG_DFL again
  }
  assert.equal(sigchldHandler(), 0n);
});
