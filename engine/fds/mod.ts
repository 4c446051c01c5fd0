/**
 * Fds of a restored process: the per-kind plan (which module re-creates
 * each fd, or why it cannot) and the emission of the restore ops.
 *
 * Emission works in three phases so that no fd number is ever clobbered:
 *
 * 1. every fd is created (opened, pipe2, eventfd2, ...) and moved to a
 *    temporary number above the highest restored fd (the restorer's own
 *    stdio fds that are to be inherited are kept the same way), and
 *    everything below is closed;
 * 2. each temporary is dup3()'d to its final number;
 * 3. the temporaries are closed, then state that needs final numbers is
 *    added (epoll watches) and status flags set.
 *
 * Temporaries are allocated in order from `high` with F_DUPFD_CLOEXEC, so
 * their numbers are known when the program is compiled.
 *
 * @module
 */

import { SYS } from "../../ffi/sysno.ts";
import { UnsupportedError } from "../errors.ts";
import { type SupportId, supportOf } from "../support.ts";
import type { FdInfo, ProcessImage } from "../model.ts";
import { type ProgramBuilder, slot } from "../program/builder.ts";
import { decodeBase64 } from "../base64.ts";
import { emitTimerfd, planEventfd, planSignalfd, planTimerfd } from "./anon.ts";
import { planEpoll } from "./epoll.ts";
import { creationOrder, describeSocket, emitInet, planInet } from "./inet_plan.ts";
import { emitNetlink } from "./netlink.ts";
import { planPipe } from "./pipe.ts";
import { planRegular, replacementFlags } from "./regular.ts";
import { type PlannedPty, planTty } from "./tty.ts";
import { ghostOpenFlags, ghostPath, type PlannedGhosts } from "./ghost.ts";
import type { SharedPipe } from "./shared_pipes.ts";
import { emitInotify, planInotify } from "./inotify.ts";
import { emitPidfd, planPidfd } from "./pidfd.ts";
import { emitAsOwner } from "../task/creds.ts";
import { type FdSource, O_CLOEXEC, O_NONBLOCK, type PlannedFd, SETFL_MASK } from "./types.ts";

export type { FdSource, PlannedFd } from "./types.ts";

const O_ACCMODE = 3;
const F_DUPFD_CLOEXEC = 1030;
const F_SETFD = 2;
const F_SETFL = 4;
const F_SETPIPE_SZ = 1031;
const EPOLL_CTL_ADD = 1;
const EFD_SEMAPHORE = 1;

function stdioFor(f: FdInfo): number {
  return f.fd <= 2 ? f.fd : (f.flags & O_ACCMODE) === 0 ? 0 : 1;
}

function planOne(
  f: FdInfo,
  proc: ProcessImage,
  shared?: readonly SharedPipe[],
  ptys: readonly PlannedPty[] = [],
  ghosts: PlannedGhosts = new Map(),
): FdSource | string {
  if (f.ghost !== undefined) {
    const { path, transferFd } = ghostPath(ghosts, f.ghost);
    return { kind: "open", path, flags: ghostOpenFlags(f), via: transferFd };
  }
  switch (f.kind) {
    case "file":
    case "directory":
      return planRegular(f);
    case "chardev":
      return f.restore === "inherit" ? { kind: "inherit", from: stdioFor(f) } : planRegular(f);
    case "tty":
      return planTty(f, stdioFor(f), ptys);
    case "pipe":
    case "fifo":
      return planPipe(f, stdioFor(f), shared);
    case "socket":
      return f.restore === "inherit"
        ? { kind: "inherit", from: stdioFor(f) }
        : planInet(f) ?? refusedBecause("socket.other");
    case "eventfd":
      return planEventfd(f);
    case "timerfd":
      return planTimerfd(f);
    case "signalfd":
      return planSignalfd(f);
    case "epoll":
      return planEpoll(f, proc.fds);
    case "inotify":
      return planInotify(f);
    case "pidfd":
      return planPidfd(f);
    default:
      return refusedBecause(refusedKind(f));
  }
}

/** The table row that refuses an fd no module re-creates. */
function refusedKind(f: FdInfo): SupportId {
  const anon = f.target.replace(/^anon_inode:\[?([^\]]*)\]?$/, "$1");
  if (f.kind === "inotify") return "fd.inotify";
  if (f.kind === "fanotify") return "fd.fanotify";
  if (f.kind === "pidfd") return "fd.pidfd";
  if (anon === "io_uring") return "fd.io_uring";
  if (anon.startsWith("perf_event")) return "fd.perf";
  if (anon.startsWith("bpf")) return "fd.bpf";
  if (anon === "userfaultfd") return "fd.userfaultfd";
  if (f.target.endsWith(" (deleted)")) return "fd.deleted";
  return "fd.anon-other";
}

function refusedBecause(id: SupportId): string {
  const row = supportOf(id);
  return `${row.what}: ${row.note ?? "not supported"}`;
}

/**
 * Decides how each fd of `proc` is re-created; throws UnsupportedError
 * listing the rest. `shared` are the tree's shared pipes (transfer fds).
 */
export function planFds(
  proc: ProcessImage,
  inheritFds?: Map<number, string>,
  shared?: readonly SharedPipe[],
  ptys?: readonly PlannedPty[],
  ghosts?: PlannedGhosts,
): PlannedFd[] {
  const out: PlannedFd[] = [];
  const problems: string[] = [];
  for (const f of proc.fds) {
    const user = inheritFds?.get(f.fd);
    if (user !== undefined) {
      out.push({
        fd: f.fd,
        source: user.startsWith("fd:")
          ? { kind: "inherit", from: Number(user.slice(3)) }
          : { kind: "open", path: user, flags: replacementFlags(f) },
      });
      continue;
    }
    if (f.excluded) continue;
    if (f.sameAs !== undefined) {
      out.push({ fd: f.fd, source: { kind: "same", as: f.sameAs } });
      continue;
    }
    const src = planOne(f, proc, shared, ptys, ghosts);
    if (typeof src === "string") {
      problems.push(`fd ${f.fd} (${f.target}): ${src} (use --inherit-fd ${f.fd}=PATH)`);
    } else out.push({ fd: f.fd, source: src });
  }
  if (problems.length) {
    throw new UnsupportedError(`process ${proc.pid} cannot be restored`, problems);
  }
  return out;
}

/** Human description of where an fd comes from (plans, comments). */
export function describeSource(f: PlannedFd): string {
  const s = f.source;
  switch (s.kind) {
    case "open":
      return `fd ${f.fd} = ${s.path}`;
    case "inherit":
      return `fd ${f.fd} = the restorer's ${
        ["stdin", "stdout", "stderr"][s.from] ?? `fd ${s.from}`
      }`;
    case "same":
      return `fd ${f.fd} shares fd ${s.as}`;
    case "pipe":
      return `fd ${f.fd} = ${s.end} end of ${s.id}${s.data ? " (with its buffered bytes)" : ""}`;
    case "inotify":
      return `fd ${f.fd} = new inotify with watches ${s.watches.map((w) => w.wd).join(", ")}`;
    case "pidfd":
      return `fd ${f.fd} = pidfd of ${s.pid}`;
    case "inet":
    case "netlink":
      return `fd ${f.fd} = ${describeSocket(s)}`;
    default:
      return `fd ${f.fd} = new ${s.kind}`;
  }
}

/** Emits the ops re-creating `fds` (see the module doc for the phases). */
export function emitFds(
  p: ProgramBuilder,
  fds: PlannedFd[],
  slotsAddress: bigint,
  scratchSlot: number,
): void {
  if (fds.length === 0) {
    p.op(SYS.close_range, [0, 0xffffffff, 0], { comment: "the process had no fds" });
    return;
  }
  const high = Math.max(
    3,
    ...fds.map((f) => f.fd + 1),
    ...fds.map((f) => f.source.kind === "inherit" ? f.source.from + 1 : 0),
    ...fds.map((f) =>
      f.source.kind === "open" && f.source.via !== undefined ? f.source.via + 1 : 0
    ),
  );
  let next = high;
  const temp = new Map<string, number>();
  p.op(SYS.close_range, [high, 0xffffffff, 0], { comment: "fds from here up are temporaries" });
  const stdio = [
    ...new Set(
      fds.flatMap((f) =>
        f.source.kind === "inherit"
          ? [f.source.from]
          : f.source.kind === "open" && f.source.via !== undefined
          ? [f.source.via]
          : []
      ),
    ),
  ];
  for (const n of stdio.sort((a, b) => a - b)) {
    const what = n <= 2 ? `the restorer's fd ${n}` : `inherited fd ${n}`;
    p.op(SYS.fcntl, [n, F_DUPFD_CLOEXEC, high], { comment: `keep ${what} as ${next}` });
    temp.set(`stdio:${n}`, next++);
  }
  p.op(SYS.close_range, [0, high - 1, 0], { comment: "nothing below the temporaries stays open" });
  const keep = (key: string, comment: string): number => {
    p.op(SYS.fcntl, [slot(scratchSlot), F_DUPFD_CLOEXEC, high], {
      comment: `${comment} as ${next}`,
    });
    p.op(SYS.close, [slot(scratchSlot)]);
    temp.set(key, next);
    return next++;
  };
  const scratchAddr = slotsAddress + BigInt(scratchSlot * 8);
  const nonblock = (flags: number) => flags & O_NONBLOCK;
  for (const f of creationOrder(fds)) {
    const s = f.source;
    const what = `fd ${f.fd}`;
    switch (s.kind) {
      case "open": {
        // A transfer fd reopened through /proc/self/fd lives at its temporary number by now.
        const path = s.via !== undefined ? `/proc/self/fd/${temp.get(`stdio:${s.via}`)}` : s.path;
        p.op(SYS.open, [p.cstring(path), s.flags | O_CLOEXEC, 0], { store: scratchSlot });
        keep(`fd:${f.fd}`, `${what} ${s.path}`);
        break;
      }
      case "pipe": {
        if (temp.has(`pipe:${s.id}:read`)) break;
        const pair = p.reserve(8);
        emitAsOwner(p, s.owner, () => p.op(SYS.pipe2, [pair, O_CLOEXEC], { comment: `${s.id}` }));
        p.copy(scratchAddr, pair, 4);
        keep(`pipe:${s.id}:read`, `read end of ${s.id}`);
        p.copy(scratchAddr, pair + 4n, 4);
        const w = keep(`pipe:${s.id}:write`, `write end of ${s.id}`);
        const ends = fds.filter((x) => x.source.kind === "pipe" && x.source.id === s.id);
        const withData = ends.map((x) => x.source).find((x) =>
          x.kind === "pipe" && (x.data || x.size)
        );
        if (withData?.kind === "pipe") {
          if (withData.size && withData.size !== 65536) {
            p.op(SYS.fcntl, [w, F_SETPIPE_SZ, withData.size], { allowFail: true });
          }
          const bytes = withData.data ? decodeBase64(withData.data) : new Uint8Array();
          if (bytes.length) {
            p.op(SYS.write, [w, p.data(bytes, 1), bytes.length], {
              comment: `${bytes.length} bytes back into ${s.id}`,
            });
          }
        }
        break;
      }
      case "eventfd":
        p.op(SYS.eventfd2, [0, O_CLOEXEC | nonblock(s.flags) | (s.semaphore ? EFD_SEMAPHORE : 0)], {
          store: scratchSlot,
        });
        if (BigInt(s.count) !== 0n) {
          p.op(SYS.write, [slot(scratchSlot), p.u64s([BigInt(s.count)]), 8], {
            comment: `eventfd count ${s.count}`,
          });
        }
        keep(`fd:${f.fd}`, `${what} eventfd`);
        break;
      case "timerfd":
        emitTimerfd(p, s, scratchSlot);
        keep(`fd:${f.fd}`, `${what} timerfd`);
        break;
      case "signalfd":
        p.op(SYS.signalfd4, [-1, p.u64s([BigInt(s.mask)]), 8, O_CLOEXEC | nonblock(s.flags)], {
          store: scratchSlot,
        });
        keep(`fd:${f.fd}`, `${what} signalfd`);
        break;
      case "epoll":
        p.op(SYS.epoll_create1, [O_CLOEXEC], { store: scratchSlot });
        keep(`fd:${f.fd}`, `${what} epoll`);
        break;
      case "inotify":
        emitInotify(p, s, scratchSlot);
        keep(`fd:${f.fd}`, `${what} inotify`);
        break;
      case "pidfd":
        emitPidfd(p, s, scratchSlot);
        keep(`fd:${f.fd}`, `${what} pidfd`);
        break;
      case "inet":
        emitInet(p, scratchSlot, s.socket, what);
        keep(`fd:${f.fd}`, `${what} ${s.socket.proto} socket`);
        break;
      case "netlink":
        emitNetlink(p, scratchSlot, s.socket, what);
        keep(`fd:${f.fd}`, `${what} netlink socket`);
        break;
    }
  }
  const byFd = new Map(fds.map((f) => [f.fd, f]));
  const tempOf = (f: PlannedFd): number => {
    const s = f.source;
    if (s.kind === "inherit") return temp.get(`stdio:${s.from}`)!;
    if (s.kind === "same") return tempOf(byFd.get(s.as)!);
    if (s.kind === "pipe") return temp.get(`pipe:${s.id}:${s.end}`)!;
    return temp.get(`fd:${f.fd}`)!;
  };
  for (const f of fds) p.op(SYS.dup3, [tempOf(f), f.fd, 0], { comment: describeSource(f) });
  p.op(SYS.close_range, [high, 0xffffffff, 0], { comment: "drop the temporaries" });
  for (const f of fds) {
    const s = f.source;
    const setfl = s.kind === "pipe" || s.kind === "inet" || s.kind === "netlink"
      ? s.flags & SETFL_MASK
      : s.kind === "inherit"
      ? s.setfl ?? 0
      : 0;
    if (setfl !== 0) p.op(SYS.fcntl, [f.fd, F_SETFL, setfl], { comment: `fd ${f.fd} flags` });
    if (s.kind === "epoll") {
      for (const t of s.targets) {
        const ev = new Uint8Array(12);
        const dv = new DataView(ev.buffer);
        dv.setUint32(0, t.events, true);
        dv.setBigUint64(4, BigInt(t.data), true);
        p.op(SYS.epoll_ctl, [f.fd, EPOLL_CTL_ADD, t.fd, p.data(ev, 4)], {
          comment: `epoll ${f.fd} watches fd ${t.fd}`,
        });
      }
    }
  }
}

/** Ops setting CLOEXEC on the fds that had it (dup3 above cleared it). */
export function emitCloexec(p: ProgramBuilder, proc: ProcessImage, fds: PlannedFd[]): void {
  const restored = new Set(fds.map((f) => f.fd));
  for (const f of proc.fds) {
    if (f.cloexec && restored.has(f.fd)) {
      p.op(SYS.fcntl, [f.fd, F_SETFD, 1], { comment: `fd ${f.fd} CLOEXEC` });
    }
  }
}
