/**
 * File locks. /proc/<pid>/fdinfo/<fd> lists, as "lock:" lines, the locks
 * taken through that open file description: flock and OFD locks (which
 * belong to the description) and the POSIX record locks of this process
 * (which belong to the process). Restore takes them again: flock and OFD
 * locks once on the re-created description, POSIX locks by the restored
 * process itself at the end of its program (after its fd phase, whose
 * closes would drop them). An active lease (F_SETLEASE) belongs to the
 * description too and is taken again on it, by the restored process (its
 * owner: lease break signals go to the fd's F_SETOWN owner, restored with
 * the fd); a lease being broken (a conflicting open is waiting) and
 * delegations are refused.
 *
 * @module
 */

import { SYS } from "../../ffi/sysno.ts";
import { cstr, rawSyscall } from "../../ffi/libc.ts";
import { flockStruct } from "../../ffi/structs.ts";
import type { FdInfo, ProcessImage } from "../model.ts";
import type { ProgramBuilder } from "../program/builder.ts";
import type { FileLock, PlannedFd } from "./types.ts";

const LOCK_SH = 1;
const LOCK_EX = 2;
const LOCK_NB = 4;
const F_SETLK = 6;
const F_OFD_SETLK = 37;
const F_SETLEASE = 1024;
const F_RDLCK = 0;
const F_WRLCK = 1;

/** A lock line of fdinfo, parsed; `other` for leases being broken, delegations and unknown classes. */
export type ParsedLock = FileLock | { class: "other"; text: string };

/**
 * Parses one fdinfo "lock:" value, e.g. "1: POSIX  ADVISORY  WRITE 123 00:2a:99 0 EOF",
 * "1: LEASE  ACTIVE    READ 123 fe:00:1446842 0 EOF".
 */
export function parseLockLine(text: string): ParsedLock {
  const m = text.trim().match(
    /^\d+:\s+(\S+)\s+(\S+)\s+(READ|WRITE|RW|UNLCK|NONE)\s+\S+\s+\S+\s+(\d+)\s+(\d+|EOF)$/,
  );
  const lease = m?.[1] === "LEASE" && m[2] === "ACTIVE";
  if (!m || !(lease || (["FLOCK", "POSIX", "OFDLCK"].includes(m[1]) && m[2] === "ADVISORY"))) {
    return { class: "other", text: text.trim() };
  }
  if (m[3] !== "READ" && m[3] !== "WRITE") return { class: "other", text: text.trim() };
  return {
    class: m[1] as FileLock["class"],
    type: m[3],
    start: Number(m[4]),
    end: m[5] === "EOF" ? "EOF" : Number(m[5]),
  };
}

/** Every lock line of an fd (from its fdinfo extras). */
export function locksOf(f: FdInfo): ParsedLock[] {
  const text = f.extra["lock"];
  return text ? text.split("\n").filter((l) => l.trim()).map(parseLockLine) : [];
}

/** The flock and OFD locks and the lease of a description (its state). */
export function descriptionLocks(f: FdInfo): FileLock[] {
  return locksOf(f).filter((l): l is FileLock =>
    l.class === "FLOCK" || l.class === "OFDLCK" || l.class === "LEASE"
  );
}

function flockArg(l: FileLock): Uint8Array {
  return flockStruct.encode({
    typeWhence: l.type === "WRITE" ? F_WRLCK : F_RDLCK, // l_whence SEEK_SET = 0
    start: BigInt(l.start),
    len: l.end === "EOF" ? 0n : BigInt(l.end - l.start + 1),
    pid: 0,
  });
}

/** Ops taking `locks` (flock / OFD / lease) through `fd` (a description that just came back). */
export function emitDescriptionLocks(p: ProgramBuilder, fd: number, locks: readonly FileLock[]) {
  for (const l of locks) {
    if (l.class === "FLOCK") {
      p.op(SYS.flock, [fd, (l.type === "WRITE" ? LOCK_EX : LOCK_SH) | LOCK_NB], {
        comment: `fd ${fd} flock ${l.type}`,
      });
    } else if (l.class === "LEASE") {
      p.op(SYS.fcntl, [fd, F_SETLEASE, l.type === "WRITE" ? F_WRLCK : F_RDLCK], {
        comment: `fd ${fd} lease ${l.type}`,
      });
    } else if (l.class === "OFDLCK") {
      p.op(SYS.fcntl, [fd, F_OFD_SETLK, p.data(flockArg(l))], {
        comment: `fd ${fd} OFD lock ${l.type} ${l.start}-${l.end}`,
      });
    }
  }
}

/**
 * Ops taking the POSIX record locks of `proc` (once each, through the
 * first restored fd that showed it). Run after the fd phase.
 */
export function emitPosixLocks(p: ProgramBuilder, proc: ProcessImage, fds: PlannedFd[]): void {
  const restored = new Set(fds.map((f) => f.fd));
  const seen = new Set<string>();
  for (const f of proc.fds) {
    if (!restored.has(f.fd)) continue;
    for (const l of locksOf(f)) {
      if (l.class !== "POSIX") continue;
      const key = `${f.file?.dev}:${f.file?.ino ?? f.target}:${l.type}:${l.start}:${l.end}`;
      if (seen.has(key)) continue;
      seen.add(key);
      p.op(SYS.fcntl, [f.fd, F_SETLK, p.data(flockArg(l))], {
        comment: `POSIX lock ${l.type} ${l.start}-${l.end} on fd ${f.fd}`,
      });
    }
  }
}

const O_RDONLY_CLOEXEC = 0o2000000;
const F_OFD_GETLK = 36;
const F_UNLCK = 2;
const EWOULDBLOCK = 11;

/**
 * Restore's pre-flight: who holds, on the file at `path`, a lock that
 * conflicts with `l` (one the tree held at the dump), or undefined when it
 * is free (or the file cannot be opened to ask). A POSIX or OFD range is
 * asked with F_OFD_GETLK on a new description; a flock by taking it
 * without waiting on one (dropped again at its close). Nothing of the
 * tree exists yet, so a conflict is another process's lock, which would
 * make the restored process's own F_SETLK/flock fail.
 */
export function lockConflict(path: string, l: FileLock): string | undefined {
  const fd = Number(rawSyscall(SYS.open, cstr(path), O_RDONLY_CLOEXEC));
  if (fd < 0) return undefined;
  try {
    if (l.class === "FLOCK") {
      const r = rawSyscall(SYS.flock, fd, (l.type === "WRITE" ? LOCK_EX : LOCK_SH) | LOCK_NB);
      return r === -BigInt(EWOULDBLOCK) ? "a conflicting flock" : undefined;
    }
    const arg = flockArg(l);
    if (rawSyscall(SYS.fcntl, fd, F_OFD_GETLK, arg) < 0n) return undefined;
    const v = new DataView(arg.buffer, arg.byteOffset, arg.byteLength);
    if (v.getInt16(0, true) === F_UNLCK) return undefined;
    const pid = v.getInt32(24, true);
    return pid > 0 ? `a POSIX lock of process ${pid}` : "an OFD lock";
  } finally {
    rawSyscall(SYS.close, fd);
  }
}
