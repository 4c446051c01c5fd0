/**
 * The tests of the BPF task iterator's thread states (engine/dump/thread_state.ts,
 * thread_facts.ts): whether it can run here, and a private memo per test.
 *
 * @module
 */

import {
  loadThreadIterator,
  threadIteratorUnavailable,
} from "../../engine/proc/thread_state_bpf.ts";

/**
 * Whether this machine lets cryo load the program (root, BPF, BTF, the
 * initial pid namespace). A program cryo itself got wrong ("internal: ...",
 * e.g. an instruction count) does not make the tests ignored: they run, and fail.
 */
export const THREAD_BPF_HERE = (loadThreadIterator() ||
  /^internal/.test(threadIteratorUnavailable() ?? "")) &&
  Deno.readLinkSync("/proc/self/ns/pid") === "pid:[4026531836]";

/** A test that needs the iterator (ignored where it cannot run, e.g. under `unshare -pf`). */
export function threadBpfTest(name: string, fn: () => void | Promise<void>): void {
  Deno.test({ name, ignore: !THREAD_BPF_HERE, fn });
}

/**
 * Runs `fn` with `env` set and a private cache directory (the boot's memo
 * of checks, engine/proc/vm_flags_memo.ts), both undone after.
 */
export async function withMemoEnv<T>(
  env: Record<string, string>,
  fn: () => Promise<T>,
): Promise<T> {
  const cache = Deno.makeTempDirSync({ prefix: "cryo-thread-memo-" });
  const all = { CRYO_CACHE_DIR: cache, ...env };
  for (const [k, v] of Object.entries(all)) Deno.env.set(k, v);
  try {
    return await fn();
  } finally {
    for (const k of Object.keys(all)) Deno.env.delete(k);
    Deno.removeSync(cache, { recursive: true });
  }
}
