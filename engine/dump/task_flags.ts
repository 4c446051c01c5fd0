/**
 * Each thread's task flags (task->flags: the PF_* bits its stat file shows)
 * from the BPF task iterator's records (engine/dump/thread_state.ts)
 * instead of one stat file per thread in the freeze. The dump uses them
 * for PR_SET_IO_FLUSHER and the MCE kill policy (engine/task/attrs.ts).
 *
 * The records' flags stand in for the stat files once a check on this boot
 * found them equal, whole words, thread by thread, in a real process, with
 * the I/O flusher's bits seen set there if the process has them
 * (engine/proc/vm_flags_memo.ts); until then every thread's stat file is
 * read (those are the values used) and compared: that is the check (one
 * difference and the iterator is not used again on this boot).
 *
 * @module
 */

import { readStat } from "../proc/stat.ts";
import { rememberThreadConfirmed, rememberThreadRefuted } from "../proc/vm_flags_memo.ts";
import { isIoFlusher } from "../task/attrs.ts";
import { type BpfThreadStates, IO_FLUSHER_FACT, TASK_FLAGS } from "./thread_state.ts";

/** Per process of the last dumps: where its threads' flags came from ("bpf", "stat: checked", "stat: <why>"). */
export const taskFlagPaths = new Map<number, string>();

/**
 * Each thread's task flags: from the records when trusted (`flagsTrusted`);
 * else, when there are records, from the stat files, compared with the
 * records (the check); else undefined (then engine/task/attrs.ts reads
 * each thread's stat file).
 */
export function taskFlagsOf(bpf: BpfThreadStates | undefined): Map<number, number> | undefined {
  if (!bpf) return undefined;
  const out = new Map<number, number>();
  if (bpf.flagsTrusted) {
    for (const [tid, f] of bpf.facts) {
      if (f.taskFlags === undefined) return undefined;
      out.set(tid, f.taskFlags);
    }
    taskFlagPaths.set(bpf.pid, "bpf");
    return out;
  }
  let diff: string | undefined;
  for (const [tid, f] of bpf.facts) {
    const flags = readStat(bpf.pid, tid).flags;
    out.set(tid, flags);
    if (diff === undefined && f.taskFlags !== flags) {
      const hex = (v: number | undefined) => v === undefined ? "none" : `0x${v.toString(16)}`;
      diff = `thread ${tid}: flags ${hex(f.taskFlags)} != ${hex(flags)} (stat)`;
    }
  }
  if (diff) {
    taskFlagPaths.set(bpf.pid, `stat: ${diff}`);
    rememberThreadRefuted(`process ${bpf.pid} ${diff}`);
  } else {
    taskFlagPaths.set(bpf.pid, "stat: checked");
    const flusher = [...out.values()].some(isIoFlusher);
    rememberThreadConfirmed([TASK_FLAGS, ...(flusher ? [IO_FLUSHER_FACT] : [])]);
  }
  return out;
}
