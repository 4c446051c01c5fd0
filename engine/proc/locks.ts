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

/** The held locks of a /proc/locks text. */
export function parseLocks(text: string): ProcLock[] {
  return text.split("\n").flatMap((l) => {
    const lock = parseLockLine(l);
    return lock ? [lock] : [];
  });
}

/**
 * Reads /proc/locks on another thread. Its first read in a while waits for
 * an RCU grace period (the kernel takes its file-lock rwsem for writing to
 * list the locks: 10 to 45 ms measured here), which a dump overlaps with its
 * collect instead of spending it frozen.
 */
export function readLocksOffThread(): Promise<ProcLock[]> {
  return Deno.readTextFile("/proc/locks").then(parseLocks);
}

/** The "maj:min:ino" form of a device and inode, as lock lines print them. */
export function lockFileId(major: number, minor: number, ino: number): string {
  const hex2 = (n: number) => n.toString(16).padStart(2, "0");
  return `${hex2(major)}:${hex2(minor)}:${ino}`;
}
