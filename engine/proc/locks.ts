/**
 * Reader of /proc/locks (every file lock of the system) and of the same
 * line format as fdinfo "lock:" lines show it.
 *
 * @module
 */

/** One held lock (waiting requests, the "->" lines, are left out). */
export interface ProcLock {
  /** FLOCK, POSIX, OFDLCK, LEASE, DELEG, ... */
  class: string;
  /** READ, WRITE, ... */
  type: string;
  /** The pid that took it (-1 for OFD locks). */
  pid: number;
  /** "maj:min:ino" of the locked file (major and minor in hex, as the kernel prints them). */
  file: string;
  /** First byte. */
  start: string;
  /** Last byte or "EOF". */
  end: string;
}

/** Parses one lock line ("1: POSIX  ADVISORY  WRITE 123 fe:00:99 0 EOF"); null for waiters. */
export function parseLockLine(line: string): ProcLock | null {
  const w = line.trim().split(/\s+/);
  if (w.length < 8 || w[1] === "->") return null;
  return { class: w[1], type: w[3], pid: Number(w[4]), file: w[5], start: w[6], end: w[7] };
}

/** Every held lock of the system, from /proc/locks. */
export function readLocks(): ProcLock[] {
  return parseLocks(Deno.readTextFileSync("/proc/locks"));
}

/** The held locks of the text of /proc/locks. */
function parseLocks(text: string): ProcLock[] {
  return text.split("\n").flatMap((l) => {
    const lock = parseLockLine(l);
    return lock ? [lock] : [];
  });
}

/**
 * {@link readLocks} on another thread (Deno's blocking pool): the first
 * read of /proc/locks takes the kernel's file-lock rwsem for writing, which
 * waits for an RCU grace period (5 to 15 ms, more under load) while using
 * no CPU, so a caller starts it early and awaits it when it needs the locks.
 * The promise never rejects unhandled: a failure is thrown where it is awaited.
 */
export function readLocksOffThread(): Promise<ProcLock[]> {
  const p = Deno.readTextFile("/proc/locks").then(parseLocks);
  p.catch(() => {}); // awaited later, or not at all when the caller failed first
  return p;
}

/** The "maj:min:ino" form of a device and inode, as lock lines print them. */
export function lockFileId(major: number, minor: number, ino: number): string {
  const hex2 = (n: number) => n.toString(16).padStart(2, "0");
  return `${hex2(major)}:${hex2(minor)}:${ino}`;
}

/**
 * Reads /proc/locks on another thread and drops the text, so that a read
 * made soon after (the dump's, in the freeze: {@link readLocksOffThread})
 * waits for no RCU grace period: after a read the kernel's file-lock rwsem
 * stays ready for writers (its rcu_sync past a grace period) for one more
 * grace period, and a read in that state enters at once and extends it.
 * Here a grace period is 12 to 16 ms: reads 10 ms apart or less all take
 * ~0.01 ms, 20 ms apart half of them wait. So the dump starts one of these
 * every ~10 ms or less before its freeze (one started while another waits
 * joins its grace period). Never rejects.
 */
export function warmLocksRead(): void {
  Deno.readFile("/proc/locks").catch(() => {});
}
