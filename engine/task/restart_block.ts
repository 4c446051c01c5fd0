/**
 * Threads found inside `restart_syscall`: a nanosleep, clock_nanosleep,
 * poll or futex wait with a timeout that was stopped once already (SIGSTOP
 * and SIGCONT, a tracer, an earlier dump with `--leave-running`) and that
 * the kernel resumed through the thread's restart block. Its registers then
 * say only `restart_syscall` (orig_rax 219): the original call is in the
 * restart block, which a restored thread does not have (there
 * `restart_syscall` fails with EINTR at once).
 *
 * At dump, while the tree is frozen, the restart block of each such thread
 * is read with a BPF task iterator (ffi/bpf_restart.ts; its function named
 * through /proc/kallsyms) and the original syscall recorded instead, when
 * the thread's argument registers (which `restart_syscall` leaves as they
 * were) agree with the block; restore then re-issues it as it re-issues any
 * interrupted call (engine/task/syscalls.ts): a nanosleep or relative
 * clock_nanosleep with a remaining-time pointer sleeps the time that
 * remained, a poll the milliseconds that remained (written into its timeout
 * argument here), a futex wait as issued. Anything else (the block cannot be
 * read, another function, arguments that disagree) is refused by name
 * (`task.restart-syscall`).
 *
 * @module
 */

import { Btf, BTF_KIND } from "../../ffi/btf.ts";
import { inInitialPidNamespace } from "../proc/thread_state_bpf.ts";
import {
  loadRestartBlockProgram,
  readRestartBlocks,
  RESTART_BYTES,
  type RestartBlockLayout,
} from "../../ffi/bpf_restart.ts";
import { clockNowNs } from "../../ffi/clock.ts";
import { rawSyscall } from "../../ffi/libc.ts";
import { signed } from "../../ffi/regs.ts";
import { SYS } from "../../ffi/sysno.ts";
import type { ProcessImage, ThreadState } from "../model.ts";
import type { Refusals } from "../support.ts";
import { recallRestartBlock, rememberRestartBlock } from "../proc/vm_flags_memo.ts";

/** The restart functions understood, by their kernel symbol. */
const FUNCTIONS = [
  "hrtimer_nanosleep_restart",
  "posix_cpu_nsleep_restart",
  "do_restart_poll",
  "futex_wait_restart",
] as const;
type RestartFn = typeof FUNCTIONS[number];

/** Offsets in struct restart_block (from BTF) of what is decoded. */
interface BlockFields {
  fn: number;
  futexUaddr: number;
  futexVal: number;
  nsClockid: number;
  nsType: number;
  nsRmtp: number;
  pollUfds: number;
  pollNfds: number;
  pollHasTimeout: number;
  pollSec: number;
  pollNsec: number;
}

interface Reader {
  layout: RestartBlockLayout;
  fields: BlockFields;
  symbols: Map<bigint, RestartFn>;
}

let reader: Reader | { unavailable: string } | undefined;

/** The layout and symbols: remembered for the boot, else read (throws when something is missing). */
function makeReader(): Reader {
  const memo = recallRestartBlock();
  if (memo) {
    const symbols = new Map<bigint, RestartFn>();
    for (const [name, addr] of Object.entries(memo.symbols)) {
      if ((FUNCTIONS as readonly string[]).includes(name)) {
        symbols.set(BigInt(addr), name as RestartFn);
      }
    }
    const layout = memo.layout as unknown as RestartBlockLayout;
    const fields = memo.fields as unknown as BlockFields;
    if (LAYOUT_KEYS.every((k) => k in layout) && FIELD_KEYS.every((k) => k in fields)) {
      return { layout, fields, symbols };
    }
  }
  const read = readReader();
  rememberRestartBlock({
    layout: { ...read.layout },
    fields: { ...read.fields },
    symbols: Object.fromEntries([...read.symbols].map(([a, n]) => [n, `0x${a.toString(16)}`])),
  });
  return read;
}

const LAYOUT_KEYS: readonly (keyof RestartBlockLayout)[] = [
  "attachBtfId",
  "seqWriteHelper",
  "probeReadHelper",
  "ctxMeta",
  "ctxTask",
  "metaSeq",
  "pid",
  "tgid",
  "threadPid",
  "restartBlock",
  "restartSize",
  "pidLevel",
  "pidNumbers",
  "upidNr",
  "upidSize",
];
const FIELD_KEYS: readonly (keyof BlockFields)[] = [
  "fn",
  "futexUaddr",
  "futexVal",
  "nsClockid",
  "nsType",
  "nsRmtp",
  "pollUfds",
  "pollNfds",
  "pollHasTimeout",
  "pollSec",
  "pollNsec",
];

/** The layout from BTF and the symbols from /proc/kallsyms (throws when something is missing). */
function readReader(): Reader {
  const btf = Btf.vmlinux();
  const need = <T>(v: T | undefined, what: string): T => {
    if (v === undefined) throw new Error(`BTF has no ${what}`);
    return v;
  };
  const struct = (name: string) => need(btf.find(BTF_KIND.STRUCT, name), `struct ${name}`);
  const member = (s: number, name: string) =>
    need(btf.member(s, name), `member ${name} of ${btf.name(s) || "an anonymous struct"}`);
  const task = struct("task_struct");
  const rb = struct("restart_block");
  const sub = (name: string) => {
    const m = member(rb, name);
    return { at: m.offset, type: btf.resolve(m.type) };
  };
  const futex = sub("futex"), ns = sub("nanosleep"), poll = sub("poll");
  const fields: BlockFields = {
    fn: member(rb, "fn").offset,
    futexUaddr: futex.at + member(futex.type, "uaddr").offset,
    futexVal: futex.at + member(futex.type, "val").offset,
    nsClockid: ns.at + member(ns.type, "clockid").offset,
    nsType: ns.at + member(ns.type, "type").offset,
    nsRmtp: ns.at + member(ns.type, "rmtp").offset,
    pollUfds: poll.at + member(poll.type, "ufds").offset,
    pollNfds: poll.at + member(poll.type, "nfds").offset,
    pollHasTimeout: poll.at + member(poll.type, "has_timeout").offset,
    pollSec: poll.at + member(poll.type, "tv_sec").offset,
    pollNsec: poll.at + member(poll.type, "tv_nsec").offset,
  };
  const size = btf.sizeOrType(rb);
  if (size > RESTART_BYTES) throw new Error(`struct restart_block is ${size} bytes`);
  const enumerator = (name: string) =>
    Number(need(btf.enumerator("bpf_func_id", name), `BPF function ${name}`));
  const layout: RestartBlockLayout = {
    attachBtfId: need(btf.find(BTF_KIND.FUNC, "bpf_iter_task"), "FUNC bpf_iter_task"),
    seqWriteHelper: enumerator("BPF_FUNC_seq_write"),
    probeReadHelper: enumerator("BPF_FUNC_probe_read_kernel"),
    ctxMeta: member(struct("bpf_iter__task"), "meta").offset,
    ctxTask: member(struct("bpf_iter__task"), "task").offset,
    metaSeq: member(struct("bpf_iter_meta"), "seq").offset,
    pid: member(task, "pid").offset,
    tgid: member(task, "tgid").offset,
    threadPid: member(task, "thread_pid").offset,
    restartBlock: member(task, "restart_block").offset,
    restartSize: size,
    pidLevel: member(struct("pid"), "level").offset,
    pidNumbers: member(struct("pid"), "numbers").offset,
    upidNr: member(struct("upid"), "nr").offset,
    upidSize: btf.sizeOrType(struct("upid")),
  };
  return { layout, fields, symbols: kallsyms() };
}

/** The addresses of {@link FUNCTIONS} in /proc/kallsyms (throws when they are hidden). */
function kallsyms(): Map<bigint, RestartFn> {
  const out = new Map<bigint, RestartFn>();
  const text = Deno.readTextFileSync("/proc/kallsyms");
  for (const name of FUNCTIONS) {
    // "<address> <type> <name>\n": a function of the kernel itself (no module after it).
    const at = text.indexOf(` ${name}\n`);
    if (at < 0) continue;
    const line = text.slice(text.lastIndexOf("\n", at) + 1, at);
    const addr = BigInt(`0x${line.slice(0, line.indexOf(" "))}`);
    if (addr === 0n) throw new Error("/proc/kallsyms hides the kernel's addresses");
    out.set(addr, name);
  }
  return out;
}

const hex = (v: bigint) => `0x${v.toString(16)}`;
const reg = (t: ThreadState, name: string) => BigInt(t.regs[name]);

/**
 * The syscall `t` was in before `restart_syscall`, decided from its
 * restart block `b` (with `f`'s offsets) and its argument registers; a
 * poll's remaining milliseconds are written into its timeout register.
 * Returns the syscall number, or why it cannot be told.
 */
function originalCall(
  t: ThreadState,
  fn: RestartFn | undefined,
  b: DataView,
  f: BlockFields,
): number | string {
  const rdi = reg(t, "rdi"), rsi = reg(t, "rsi"), rdx = reg(t, "rdx"), r10 = reg(t, "r10");
  switch (fn) {
    case "hrtimer_nanosleep_restart": {
      const rmtp = b.getUint32(f.nsType, true) === 0 ? 0n : b.getBigUint64(f.nsRmtp, true);
      // clock_nanosleep's first argument is a clock id, nanosleep's a pointer (never in page 0).
      if (rdi < 4096n) {
        return r10 === rmtp && (rsi & 1n) === 0n
          ? SYS.clock_nanosleep
          : "a relative clock_nanosleep whose arguments changed";
      }
      return rsi === rmtp ? SYS.nanosleep : "a nanosleep whose arguments changed";
    }
    case "posix_cpu_nsleep_restart": {
      const rmtp = b.getUint32(f.nsType, true) === 0 ? 0n : b.getBigUint64(f.nsRmtp, true);
      const clock = b.getInt32(f.nsClockid, true);
      // CLOCK_PROCESS_CPUTIME_ID and CLOCK_THREAD_CPUTIME_ID are kept as the
      // kernel's own CPU clock ids of "this process" and "this thread".
      const arg = Number(BigInt.asIntN(32, rdi));
      const asKept = arg === 2 ? -6 : arg === 3 ? -2 : arg;
      return asKept === clock && r10 === rmtp
        ? SYS.clock_nanosleep
        : "a CPU-clock clock_nanosleep whose arguments changed";
    }
    case "do_restart_poll": {
      const nfds = BigInt(b.getUint32(f.pollNfds, true));
      if (rdi !== b.getBigUint64(f.pollUfds, true) || (rsi & 0xffffffffn) !== nfds) {
        return "a poll whose arguments changed";
      }
      if (b.getInt32(f.pollHasTimeout, true)) {
        // The end is on CLOCK_MONOTONIC: the time that remained at the dump, rounded up.
        const end = b.getBigInt64(f.pollSec, true) * 1_000_000_000n +
          b.getBigInt64(f.pollNsec, true);
        const left = end - clockNowNs(1);
        const ms = left <= 0n ? 0n : (left + 999_999n) / 1_000_000n;
        if (ms <= 0x7fffffffn) t.regs.rdx = hex(ms);
        else if (Number(BigInt.asIntN(32, rdx)) < 0) return "a poll whose timeout changed";
      }
      return SYS.poll;
    }
    case "futex_wait_restart":
      return rdi === b.getBigUint64(f.futexUaddr, true) &&
          (rdx & 0xffffffffn) === BigInt(b.getUint32(f.futexVal, true))
        ? SYS.futex
        : "a futex wait whose arguments changed";
    default:
      return "its restart block runs a function cryo does not know";
  }
}

/**
 * For every thread of the frozen process `image.pid` stopped inside
 * `restart_syscall`, records the syscall it restarts instead (see the
 * module doc), or reports to `refusals` why it cannot. Nothing is read
 * when no thread is there.
 */
export function resolveRestartSyscalls(
  image: Pick<ProcessImage, "pid" | "threads">,
  refusals: Refusals,
): void {
  const inRestart = image.threads.filter((t) =>
    t.syscall.restart === "restart" &&
    Number(signed(BigInt(t.regs.orig_rax))) === SYS.restart_syscall
  );
  if (!inRestart.length) return;
  const refuse = (t: ThreadState, why: string) =>
    refusals.use("task.restart-syscall", `process ${image.pid} thread ${t.tid}`, why);
  if (!reader) {
    try {
      reader = makeReader();
    } catch (e) {
      reader = { unavailable: e instanceof Error ? e.message : String(e) };
    }
  }
  if ("unavailable" in reader) {
    for (const t of inRestart) refuse(t, `its restart block cannot be read: ${reader.unavailable}`);
    return;
  }
  let blocks: Map<number, Uint8Array>;
  try {
    const fd = loadRestartBlockProgram(reader.layout);
    try {
      blocks = readRestartBlocks(fd, image.pid, !inInitialPidNamespace());
    } finally {
      rawSyscall(SYS.close, fd);
    }
  } catch (e) {
    const why = e instanceof Error ? e.message.split("\n")[0] : String(e);
    for (const t of inRestart) refuse(t, `its restart block cannot be read: ${why}`);
    return;
  }
  for (const t of inRestart) {
    const bytes = blocks.get(t.tid);
    if (!bytes) {
      refuse(t, "its restart block was not found");
      continue;
    }
    const b = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const fn = reader.symbols.get(b.getBigUint64(reader.fields.fn, true));
    const nr = originalCall(t, fn, b, reader.fields);
    if (typeof nr === "string") {
      refuse(t, nr);
      continue;
    }
    t.regs.orig_rax = hex(BigInt(nr));
    t.syscall = { ...t.syscall, nr };
  }
}
