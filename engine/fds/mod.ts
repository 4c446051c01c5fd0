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
 * their numbers are known when the program is compiled. When the numbers
 * above the highest fd would pass the process's NOFILE hard limit (valgrind
 * keeps its own fds just under it; raising the limit needs
 * CAP_SYS_RESOURCE), they go into the lowest gap between the fds that
 * holds them all, and everything outside the gap is closed instead.
 *
 * @module
 */

import { planMqueue } from "./mqueue.ts";
import { SYS } from "../../ffi/sysno.ts";
import { UnsupportedError } from "../errors.ts";
import { type SupportId, supportOf } from "../support.ts";
import type { FdInfo, ProcessImage } from "../model.ts";
import type { ProgramBuilder } from "../program/builder.ts";
import { planEventfd, planSignalfd, planTimerfd } from "./anon.ts";
import { type CreateContext, createKey, emitCreate } from "./create.ts";
import { planEpoll } from "./epoll.ts";
import { planFifo } from "./fifo.ts";
import { creationOrder, describeSocket, planInet } from "./inet_plan.ts";
import { planPipe } from "./pipe.ts";
import { type OutsideContext, outsideSource } from "./outside.ts";
import { planRegular, replacementFlags } from "./regular.ts";
import { planShared, type SharedPlan } from "./shared.ts";
import { descriptionState, emitDescriptionState } from "./state.ts";
import { type PlannedPty, planTty } from "./tty.ts";
import {
  ghostDescriptionKey,
  ghostOpenFlags,
  ghostPath,
  ghostRefused,
  type PlannedGhosts,
} from "./ghost.ts";
import { planInotify } from "./inotify.ts";
import { planPidfd } from "./pidfd.ts";
import { NSFS_LINK, planNsfd } from "./nsfd.ts";
import type { FdSource, PlannedFd } from "./types.ts";
import { planUnixFd, type UnixTreePlan } from "./unix.ts";
import { CARRIED_PID, carriedDescriptions } from "./unix_scm.ts";

const O_PATH = 0o10000000;

export type { FdSource, PlannedFd } from "./types.ts";
export type { SharedPlan } from "./shared.ts";

const O_ACCMODE = 3;
const F_DUPFD_CLOEXEC = 1030;
const F_SETFD = 2;
const F_SETFL = 4;
const EPOLL_CTL_ADD = 1;

function stdioFor(f: FdInfo): number {
  return f.fd <= 2 ? f.fd : (f.flags & O_ACCMODE) === 0 ? 0 : 1;
}

/** Where `f`, if it leads out of the tree, comes from (outside.ts); the restorer's stdio without a context. */
function leadingOut(f: FdInfo, outside: OutsideContext | undefined): FdSource | string {
  return outside ? outsideSource(f, outside) : { kind: "inherit", from: stdioFor(f) };
}

function planOne(
  f: FdInfo,
  proc: ProcessImage,
  ptys: readonly PlannedPty[] = [],
  ghosts: PlannedGhosts = new Map(),
  unix?: UnixTreePlan,
  outside?: OutsideContext,
): FdSource | string | null {
  if (ghostRefused(f)) return null; // (named by the dump's ghost collection)
  if (f.ghost !== undefined) {
    const { path, transferFd } = ghostPath(ghosts, f.ghost);
    // A memfd's own description is taken by one of its descriptions (see planGhosts).
    const own = ghosts.get(f.ghost)?.own === ghostDescriptionKey(proc.pid, f);
    return {
      kind: "open",
      path,
      flags: ghostOpenFlags(f),
      via: transferFd,
      ...(own ? { own } : {}),
    };
  }
  // An O_PATH fd names a path, whatever is there (a symlink, a FIFO, a socket's file): reopened so.
  if (f.flags & O_PATH && f.target.startsWith("/") && !f.target.endsWith(" (deleted)")) {
    return planRegular(f);
  }
  switch (f.kind) {
    case "file":
    case "directory":
      return planRegular(f);
    case "path": // (an O_PATH fd: planned above)
      return planRegular(f);
    case "chardev":
      if (f.restore === "inherit") return { kind: "inherit", from: stdioFor(f) };
      // A device node removed while open: nothing can make it again unlinked.
      return f.target.endsWith(" (deleted)") ? refusedBecause("fd.deleted") : planRegular(f);
    case "tty":
      return planTty(f, stdioFor(f), ptys, leadingOut(f, outside));
    case "pipe":
      return planPipe(f, leadingOut(f, outside), proc.fds);
    case "fifo":
      return planFifo(f);
    case "socket":
      return f.socket?.unix
        ? planUnixFd(f, unix)
        : f.restore === "inherit"
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
      return planInotify(f, ghosts);
    case "pidfd":
      return planPidfd(f, proc.fds);
    case "mqueue":
      return planMqueue(f);
    default:
      return planNsfd(f) ?? refusedBecause(refusedKind(f));
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
  if (NSFS_LINK.test(f.target)) return "fd.nsfs-other";
  return "fd.anon-other";
}

function refusedBecause(id: SupportId): string {
  const row = supportOf(id);
  return `${row.what}: ${row.note ?? "not supported"}`;
}

/**
 * Finds the open file descriptions and pipes shared between processes of
 * the tree (see shared.ts), planned with the fd kinds of this module; their
 * transfer fds go above those of the tree's ptys and ghost files.
 */
const UNIX_BY_HOLDER: FdSource = { kind: "inherit", from: -1 };

export function planSharedObjects(
  images: readonly ProcessImage[],
  ptys: readonly PlannedPty[] = [],
  ghosts: PlannedGhosts = new Map(),
): SharedPlan {
  const above = Math.max(
    0,
    ...ptys.map((p) => p.transferFd + 1),
    ...[...ghosts.values()].map((g) => g.transferFd + 1),
  );
  // Unix sockets are created by the unix plan (unix.ts): each holder takes its own.
  return planShared(
    images,
    (f, proc) =>
      f.socket?.unix
        ? UNIX_BY_HOLDER
        : proc.pid === CARRIED_PID && f.kind === "epoll"
        ? carriedEpoll(f, images)
        : planOne(f, proc, ptys, ghosts) ?? "refused",
    above,
    carriedDescriptions(images),
  );
}

/**
 * An epoll only a queued message holds: checked against its watcher's fds
 * (epoll.ts), made without its watches, which the watcher adds.
 */
function carriedEpoll(f: FdInfo, images: readonly ProcessImage[]): FdSource | string {
  const watcher = images.find((p) => String(p.pid) === f.extra["epoll-watcher"]);
  const source = planEpoll(f, watcher?.fds ?? []);
  if (typeof source === "string" || source.kind !== "epoll") return source;
  return { ...source, targets: [] };
}

/**
 * Decides how each fd of `proc` is re-created; throws UnsupportedError
 * listing the rest. `shared` is the tree's plan of shared objects (fds
 * taken from transfer numbers).
 * `unix` is its unix sockets (sockets the unix plan refused are left out).
 * `root`: `proc` is the tree's root, whose fds `--inherit-fd` can replace
 * at restore (its errors say so; the dump's check passes false: a refused
 * dump has nothing to restore). `outside`: what the tree tells of pipes
 * and terminals leading out of it (outside.ts); without it they take
 * the restorer's stdin or stdout (a plan shown, not restored).
 */
export function planFds(
  proc: ProcessImage,
  inheritFds?: Map<number, string>,
  shared?: SharedPlan,
  ptys?: readonly PlannedPty[],
  ghosts?: PlannedGhosts,
  unix?: UnixTreePlan,
  root = false,
  outside?: OutsideContext,
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
    const transfer = shared?.holders.get(proc.pid)?.get(f.fd);
    if (transfer) {
      out.push({ fd: f.fd, source: transfer });
      continue;
    }
    const src = planOne(f, proc, ptys, ghosts, unix, outside);
    if (src === null) continue; // refused by the tree's unix plan or the ghost collection, which named it
    if (typeof src === "string") {
      const hint = root && !src.includes("--inherit-fd") ? ` (use --inherit-fd ${f.fd}=PATH)` : "";
      problems.push(`fd ${f.fd} (${f.target}): ${src}${hint}`);
      continue;
    }
    const state = descriptionState(f, src);
    out.push({ fd: f.fd, source: src, ...(state ? { state } : {}) });
  }
  if (problems.length) {
    throw new UnsupportedError(`process ${proc.pid} cannot be restored`, problems);
  }
  // Epolls only a queued message holds whose watches this process adds: at their own numbers.
  for (const w of shared?.watchers.get(proc.pid) ?? []) {
    out.push({ fd: w.from, source: w, closeAfter: true });
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
      // Above 2: a transfer fd, made for the tree by an ancestor (unix sockets).
      return s.from <= 2
        ? `fd ${f.fd} = the restorer's ${["stdin", "stdout", "stderr"][s.from]}`
        : `fd ${f.fd} = transfer fd ${s.from}, made for the tree`;
    case "same":
      return `fd ${f.fd} shares fd ${s.as}`;
    case "pipe":
      return `fd ${f.fd} = ${s.end} end of ${s.id}${s.data ? " (with its buffered bytes)" : ""}`;
    case "fifo":
      return `fd ${f.fd} = FIFO ${s.path}${s.deleted ? " (deleted)" : ""}${
        s.data ? " (with its buffered bytes)" : ""
      }`;
    case "transfer":
      return `fd ${f.fd} = ${s.key}, shared in the tree (from fd ${s.from})`;
    case "inotify":
      return `fd ${f.fd} = new inotify with watches ${s.watches.map((w) => w.wd).join(", ")}`;
    case "pidfd":
      return s.exit === undefined
        ? `fd ${f.fd} = pidfd of ${s.pid}`
        : `fd ${f.fd} = pidfd of a process that exited`;
    case "inet":
    case "netlink":
    case "packet":
      return `fd ${f.fd} = ${describeSocket(s)}`;
    case "hungup-tty":
      return `fd ${f.fd} = a hung-up terminal`;
    default:
      return `fd ${f.fd} = new ${s.kind}`;
  }
}

/** The fd a source is taken from (the restorer's stdio, a transfer number), if any. */
function takenFrom(f: PlannedFd): number | undefined {
  const s = f.source;
  return s.kind === "inherit" || s.kind === "transfer" ? s.from : undefined;
}

/** The fds the fd phase keeps while it creates `f`: one taken from, or reached through /proc. */
function keptFrom(f: PlannedFd): number[] {
  const s = f.source;
  if (s.kind === "open" && s.via !== undefined) return [s.via];
  if (s.kind === "inotify") return s.watches.flatMap((w) => w.via !== undefined ? [w.via] : []);
  const from = takenFrom(f);
  return from !== undefined ? [from] : [];
}

/** The first temporary number of the fd phase: above every target and every kept fd. */
function firstTemporary(fds: readonly PlannedFd[]): number {
  return Math.max(
    3,
    ...fds.map((f) => f.fd + 1),
    ...fds.flatMap((f) => keptFrom(f).map((n) => n + 1)),
  );
}

/** How many temporaries the fd phase of `fds` may hold at once, at most (with room to spare). */
function temporariesBound(fds: readonly PlannedFd[]): number {
  // One per kept fd and one per created description, a pipe's second end, a helper.
  return 4 * fds.length + 8;
}

/**
 * The lowest number from which `count` numbers hold no target and no kept
 * fd of `fds` (the fd phase's temporaries can go there when there is no
 * room above them under the NOFILE hard limit), or undefined.
 */
function gapBelow(fds: readonly PlannedFd[], count: number, limit: number): number | undefined {
  const taken = [...new Set(fds.flatMap((f) => [f.fd, ...keptFrom(f)]))]
    .filter((n) => n >= 3).sort((a, b) => a - b);
  let lo = 3;
  for (const n of taken) {
    if (n - lo >= count) break;
    lo = Math.max(lo, n + 1);
  }
  return lo + count <= limit ? lo : undefined;
}

/** Emits the ops re-creating `fds` (see the module doc for the phases). */
export function emitFds(
  p: ProgramBuilder,
  fds: PlannedFd[],
  slotsAddress: bigint,
  scratchSlot: number,
  /** The process's NOFILE hard limit (the temporaries must stay under it). */
  nofileHard = Infinity,
): void {
  if (fds.length === 0) {
    p.op(SYS.close_range, [0, 0xffffffff, 0], { comment: "the process had no fds" });
    return;
  }
  // The temporaries go above every target and kept fd; when that passes the hard limit (valgrind
  // keeps its own fds just under it), into the lowest gap between them that is big enough.
  const room = temporariesBound(fds);
  let high = firstTemporary(fds);
  let gapEnd: number | undefined;
  if (high + room > nofileHard) {
    const lo = gapBelow(fds, room, nofileHard);
    if (lo !== undefined) [high, gapEnd] = [lo, lo + room];
  }
  const temporaries = gapEnd === undefined ? [high, 0xffffffff] : [high, gapEnd - 1];
  let next = high;
  const temp = new Map<string, number>();
  p.op(SYS.close_range, [...temporaries, 0], {
    comment: gapEnd === undefined
      ? "fds from here up are temporaries"
      : `fds ${high}-${gapEnd - 1} are temporaries`,
  });
  const stdio = [...new Set(fds.flatMap((f) => keptFrom(f)))];
  for (const n of stdio.sort((a, b) => a - b)) {
    const what = n <= 2 ? `the restorer's fd ${n}` : `inherited fd ${n}`;
    p.op(SYS.fcntl, [n, F_DUPFD_CLOEXEC, high], { comment: `keep ${what} as ${next}` });
    temp.set(`stdio:${n}`, next++);
  }
  p.op(SYS.close_range, [0, high - 1, 0], { comment: "nothing below the temporaries stays open" });
  if (gapEnd !== undefined) {
    p.op(SYS.close_range, [gapEnd, 0xffffffff, 0], { comment: "nor above them" });
  }
  const cx: CreateContext = {
    p,
    scratchSlot,
    scratchAddr: slotsAddress + BigInt(scratchSlot * 8),
    keep(key, comment) {
      p.op(SYS.fcntl, [{ slot: scratchSlot }, F_DUPFD_CLOEXEC, high], {
        comment: `${comment} as ${next}`,
      });
      p.op(SYS.close, [{ slot: scratchSlot }]);
      temp.set(key, next);
      return next++;
    },
    has: (key) => temp.has(key),
    current: (fd) => temp.get(`stdio:${fd}`) ?? fd,
    numberOf: (key) => temp.get(key),
  };
  for (const f of creationOrder(fds)) emitCreate(cx, f, fds);
  const byFd = new Map(fds.map((f) => [f.fd, f]));
  const tempOf = (f: PlannedFd): number => {
    const from = takenFrom(f);
    if (from !== undefined) return temp.get(`stdio:${from}`)!;
    if (f.source.kind === "same") return tempOf(byFd.get(f.source.as)!);
    return temp.get(createKey(f))!;
  };
  if (gapEnd !== undefined && next > gapEnd) {
    throw new Error(`the fd phase needs ${next - high} temporaries, more than the ${room} planned`);
  }
  for (const f of fds) p.op(SYS.dup3, [tempOf(f), f.fd, 0], { comment: describeSource(f) });
  p.op(SYS.close_range, [...temporaries, 0], { comment: "drop the temporaries" });
  for (const f of fds) {
    const s = f.source;
    if (f.state) emitDescriptionState(p, f.fd, f.state);
    if (s.kind === "transfer" && s.setfl !== undefined) {
      p.op(SYS.fcntl, [f.fd, F_SETFL, s.setfl], { comment: `fd ${f.fd} status flags (O_ASYNC)` });
    }
    const watches = s.kind === "epoll" ? s.targets : s.kind === "transfer" ? s.watches : undefined;
    for (const t of watches ?? []) {
      const ev = new Uint8Array(12);
      const dv = new DataView(ev.buffer);
      dv.setUint32(0, t.events, true);
      dv.setBigUint64(4, BigInt(t.data), true);
      // A watch whose number no longer holds its file (closed or reused since, see
      // epoll.ts): added through that number made a duplicate of the fd that holds it.
      const moved = t.at !== undefined && t.at !== t.fd;
      const occupied = moved && byFd.has(t.fd);
      if (occupied) p.op(SYS.dup3, [t.fd, high, 0], { comment: `fd ${t.fd} aside` });
      if (moved) p.op(SYS.dup3, [t.at!, t.fd, 0], { comment: `fd ${t.fd} as fd ${t.at}` });
      p.op(SYS.epoll_ctl, [f.fd, EPOLL_CTL_ADD, t.fd, p.data(ev, 4)], {
        comment: `epoll ${f.fd} watches fd ${t.fd}`,
      });
      if (occupied) {
        p.op(SYS.dup3, [high, t.fd, 0], { comment: `fd ${t.fd} back` });
        p.op(SYS.close, [high]);
      } else if (moved) p.op(SYS.close, [t.fd], { comment: `fd ${t.fd} was closed` });
    }
    if (f.closeAfter) p.op(SYS.close, [f.fd], { comment: `fd ${f.fd} was only taken for this` });
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
