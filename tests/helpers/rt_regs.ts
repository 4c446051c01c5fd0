/**
 * Test helpers for tests/targets/rt_regs.c: its ready line and waiting on
 * its loop counter (read through /proc/<pid>/mem), so that a test knows
 * the target is inside its checking loop, or has re-checked its registers
 * many times, instead of sleeping and hoping it was scheduled.
 *
 * @module
 */

import { startTarget, type Target } from "./targets.ts";
import { deadlineIn } from "./wait.ts";

/** rt_regs' ready line: pid, loop start and end, avx512, fsgsbase, address of the loop counter. */
export const RT_REGS_READY =
  /^ready pid=(\d+) loop=0x([0-9a-f]+)-0x([0-9a-f]+) avx512=(yes|no) fsgsbase=(yes|no) iter=0x([0-9a-f]+)$/m;

/** The 64-bit word at `addr` of process `pid`, read through /proc/<pid>/mem. */
export function readWord(pid: number, addr: bigint): bigint {
  const f = Deno.openSync(`/proc/${pid}/mem`, { read: true });
  try {
    f.seekSync(Number(addr), Deno.SeekMode.Start);
    const buf = new Uint8Array(8);
    if (f.readSync(buf) !== 8) throw new Error(`short read of ${pid} at 0x${addr.toString(16)}`);
    return new DataView(buf.buffer).getBigUint64(0, true);
  } finally {
    f.close();
  }
}

/**
 * Starts rt_regs with `args`, waits for its ready line and then until its
 * loop ran at least once (from then on it never leaves the loop before a
 * SIGUSR1). Returns the match of the ready line and the counter's address.
 */
export async function startRegsInLoop(
  args: string[],
): Promise<{ t: Target; ready: RegExpMatchArray; iter: bigint }> {
  const t = await startTarget("rt_regs", args);
  const ready = await t.waitFor(RT_REGS_READY);
  const iter = BigInt(`0x${ready[6]}`);
  await waitIterations(t, iter, 0n, 1n);
  return { t, ready, iter };
}

/**
 * Waits until rt_regs' loop counter at `iter` reached `from + more` (it
 * re-checked every register that many more times); throws if the target
 * ended or after `timeoutMs`.
 */
export async function waitIterations(
  t: Target,
  iter: bigint,
  from: bigint,
  more: bigint,
  timeoutMs = 30000,
): Promise<bigint> {
  const deadline = deadlineIn(timeoutMs);
  for (;;) {
    if (t.poll()) throw new Error(`rt_regs ${t.pid} ended:\n${t.output()}`);
    const n = readWord(t.pid, iter);
    if (n >= from + more) return n;
    if (Date.now() > deadline) {
      throw new Error(
        `rt_regs ${t.pid}: ${n - from} of ${more} loop iterations in ${timeoutMs} ms`,
      );
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}
