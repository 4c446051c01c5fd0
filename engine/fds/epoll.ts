/**
 * epoll instances: re-created empty, then every watched fd added back with
 * its event mask and data once all fds have their final numbers.
 *
 * A watch is a (file, fd number) pair, and outlives the close of its fd
 * number while the file stays open through another fd (a dup): fdinfo
 * still shows the old number, which may now be closed or hold another
 * file. **Dump** (`collectEpoll`) checks each watch against the fd at its
 * number: the inode first (from the stat every fd has), then
 * kcmp(KCMP_EPOLL_TFD) where the number's inode is the watched one but the
 * process holds more than one description of it (both ends of a pipe); a
 * watch whose number does not hold its file is looked for among the
 * process's other fds of that inode (kcmp again) and recorded with the fd
 * found (`tfd-at`, one entry per `tfd` line, "" where the number holds
 * it). **Restore** adds such a watch through its old number made, for that
 * one call, a duplicate of the fd found (the number's own file is moved
 * aside to the first temporary number and put back), then closes the
 * number if it was closed. A watch whose file no fd of the process holds,
 * and an EPOLLONESHOT watch that fired and was not re-armed (its events
 * are cleared: an add would arm it again), are refused.
 *
 * The instance's busy-poll parameters (EPIOCSPARAMS: microseconds, budget,
 * prefer) are read at dump (EPIOCGPARAMS on a copy of the fd) and kept
 * when set (`epoll-params`), set again right after epoll_create1.
 *
 * @module
 */

import { rawSyscall } from "../../ffi/libc.ts";
import { withTargetFd } from "../../ffi/pidfd.ts";
import { type ProgramBuilder, slot } from "../program/builder.ts";
import { SYS } from "../../ffi/sysno.ts";
import type { FdInfo } from "../model.ts";
import type { ProcFd } from "../proc/fds.ts";
import { supportOf } from "../support.ts";
import { type FdSource, O_CLOEXEC } from "./types.ts";

/** One watch of an epoll fd as a plan keeps it. */
export interface EpollWatch {
  /** The fd number it was added under. */
  fd: number;
  /** Event mask (with EPOLLET, EPOLLONESHOT, EPOLLEXCLUSIVE, EPOLLWAKEUP). */
  events: number;
  /** The data word, "0x..." hex. */
  data: string;
  /** Another fd of the process holding the watched file, when `fd` no longer does. */
  at?: number;
}

const KCMP_EPOLL_TFD = 7;
const EPOLLONESHOT = 1 << 30;
/** EPOLLWAKEUP, EPOLLONESHOT, EPOLLET, EPOLLEXCLUSIVE: what a fired one-shot watch keeps. */
const EP_PRIVATE_BITS = (1 << 29) | (1 << 30) | (1 << 31) | (1 << 28);

interface TfdLine {
  fd: number;
  events: number;
  data: string;
  ino: number;
}

function parseLines(text: string | undefined): TfdLine[] {
  if (!text) return [];
  return text.split("\n").filter(Boolean).map((line) => {
    const m = line.match(/^\s*(\d+)\s+events:\s*([0-9a-f]+)\s+data:\s*([0-9a-f]+)/i);
    if (!m) throw new Error(`unreadable epoll watch: ${line}`);
    const ino = line.match(/\bino:\s*([0-9a-f]+)/i);
    return {
      fd: Number(m[1]),
      events: parseInt(m[2], 16) >>> 0,
      data: `0x${m[3]}`,
      ino: ino ? parseInt(ino[1], 16) : -1,
    };
  });
}

/** Parses the `tfd:` lines of an epoll fdinfo (`tfd: N events: HEX data: HEX ...`) and `tfd-at`. */
export function epollTargets(f: FdInfo): EpollWatch[] {
  const at = f.extra["tfd-at"]?.split(",");
  return parseLines(f.extra["tfd"]).map((l, i) => {
    const w: EpollWatch = { fd: l.fd, events: l.events, data: l.data };
    if (at?.[i]) w.at = at[i] === "-" ? -1 : Number(at[i]);
    return w;
  });
}

/**
 * kcmp(KCMP_EPOLL_TFD): whether `pid`'s fd `fd` is the file of the `toff`-th
 * watch (in fdinfo order) added under number `tfd` to epoll `efd`.
 */
function holdsWatched(pid: number, fd: number, efd: number, tfd: number, toff: number): boolean {
  const slot = new Uint32Array([efd, tfd, toff]); // struct kcmp_epoll_slot
  return rawSyscall(SYS.kcmp, pid, pid, KCMP_EPOLL_TFD, fd, slot) === 0n;
}

/**
 * Most kcmp(KCMP_EPOLL_TFD) work a dump spends on one process's watches that
 * the inode alone cannot tell, counted in watches walked: the kernel walks
 * the instance's watches in order on every call (57 to 204 us per call at
 * 1000 watches, measured under load). Past it a number holding a file of the watched inode
 * is taken as holding the watched file.
 */
export const EPOLL_KCMP_BUDGET = 100_000;

/**
 * Dump: reads the busy-poll parameters of each epoll of `pid` (one
 * pidfd_getfd and ioctl per epoll description) and finds, for each watch,
 * whether its fd number still holds the watched file, else which fd does
 * (`tfd-at` in the epoll fd's extras; "-" when none). A number that is
 * closed or holds another inode tells at once; kcmp is asked only where the
 * process holds the watched inode through several descriptions (both ends
 * of a pipe; every eventfd, timerfd, signalfd, epoll and inotify fd share
 * one anonymous inode), within {@link EPOLL_KCMP_BUDGET}. Nothing is
 * recorded when every number holds its file.
 */
export function collectEpoll(pid: number, procFds: readonly ProcFd[], fdInfos: FdInfo[]): void {
  if (!fdInfos.some((f) => f.kind === "epoll")) return;
  const byFd = new Map(procFds.map((p) => [p.fd, p]));
  const byIno = new Map<number, ProcFd[]>();
  const descriptions = new Map<number, number>(); // inode -> descriptions of it held
  for (const [i, p] of procFds.entries()) {
    const list = byIno.get(p.stat.ino);
    if (list) list.push(p);
    else byIno.set(p.stat.ino, [p]);
    if (fdInfos[i]?.sameAs === undefined) {
      descriptions.set(p.stat.ino, (descriptions.get(p.stat.ino) ?? 0) + 1);
    }
  }
  let budget = EPOLL_KCMP_BUDGET;
  for (const f of fdInfos) {
    if (f.kind !== "epoll" || f.sameAs !== undefined) continue;
    const params = busyPollParams(pid, f.fd);
    if (params) f.extra["epoll-params"] = params;
    if (!f.extra["tfd"]) continue;
    let lines;
    try {
      lines = parseLines(f.extra["tfd"]);
    } catch {
      continue; // planEpoll names it
    }
    const check = (fd: number, l: TfdLine, toff: number) => {
      budget -= lines.length;
      return holdsWatched(pid, fd, f.fd, l.fd, toff);
    };
    let moved = false;
    const seen = new Map<number, number>();
    const at = lines.map((l) => {
      // The kernel counts the watches under one number in fdinfo's order.
      const toff = seen.get(l.fd) ?? 0;
      seen.set(l.fd, toff + 1);
      if (l.ino < 0) return "";
      const here = byFd.get(l.fd);
      if (here?.stat.ino === l.ino) {
        // The only description of that inode here, or no budget left to ask.
        if (descriptions.get(l.ino) === 1 || budget <= 0) return "";
        if (check(l.fd, l, toff)) return "";
      }
      moved = true;
      const found = (byIno.get(l.ino) ?? []).find((p) => p.fd !== l.fd && check(p.fd, l, toff));
      return found ? String(found.fd) : "-";
    });
    if (moved) f.extra["tfd-at"] = at.join(",");
  }
}

/**
 * Dump, for an epoll only a queued message holds (engine/fds/unix_scm.ts):
 * which process of the tree holds, at each watch's fd number, the watched
 * file (kcmp(KCMP_EPOLL_TFD) between that number in the candidate and
 * cryo's copy `copy` of the epoll); every watch must be held so by one
 * process, which adds them back at restore. Records it in `f.extra`
 * (`epoll-watcher`), with the busy-poll parameters; or says why not.
 */
export function inFlightEpollWatcher(
  copy: number,
  f: FdInfo,
  tree: readonly { pid: number; fds: readonly FdInfo[] }[],
): string | undefined {
  const params = busyPollParams(Deno.pid, copy);
  if (params) f.extra["epoll-params"] = params;
  let lines;
  try {
    lines = parseLines(f.extra["tfd"]);
  } catch (e) {
    return (e as Error).message;
  }
  const seen = new Map<number, number>();
  let watcher: number | undefined;
  for (const l of lines) {
    const toff = seen.get(l.fd) ?? 0;
    seen.set(l.fd, toff + 1);
    const slot = new Uint32Array([copy, l.fd, toff]); // struct kcmp_epoll_slot
    const holders = tree.filter((p) =>
      p.fds.some((x) => x.fd === l.fd && !x.excluded) &&
      rawSyscall(SYS.kcmp, p.pid, Deno.pid, KCMP_EPOLL_TFD, l.fd, slot) === 0n
    ).map((p) => p.pid);
    const at = watcher !== undefined && holders.includes(watcher) ? watcher : holders[0];
    if (at === undefined) {
      return `its watch of fd ${l.fd} (data ${l.data}) is of a file no process of the tree holds at that number`;
    }
    if (watcher !== undefined && at !== watcher) {
      return `its watches are of files no one process of the tree holds at their numbers`;
    }
    watcher = at;
  }
  if (watcher !== undefined) f.extra["epoll-watcher"] = String(watcher);
  return undefined;
}

/** EPIOCGPARAMS and EPIOCSPARAMS (_IOR/_IOW(0x8A, 2/1, struct epoll_params), 8 bytes). */
const EPIOCGPARAMS = 0x80088a02;
const EPIOCSPARAMS = 0x40088a01;

/**
 * The busy-poll parameters of `pid`'s epoll fd `fd` as "usecs,budget,prefer"
 * when any is set (undefined otherwise, or where the kernel has no such ioctl).
 */
function busyPollParams(pid: number, fd: number): string | undefined {
  const b = new Uint8Array(8); // u32 busy_poll_usecs, u16 busy_poll_budget, u8 prefer, u8 pad
  try {
    if (withTargetFd(pid, fd, (copy) => rawSyscall(SYS.ioctl, copy, EPIOCGPARAMS, b)) < 0n) {
      return undefined;
    }
  } catch {
    return undefined;
  }
  const v = new DataView(b.buffer);
  const [usecs, budget, prefer] = [v.getUint32(0, true), v.getUint16(4, true), b[6]];
  return usecs || budget || prefer ? `${usecs},${budget},${prefer}` : undefined;
}

/** Emits the creation of an epoll instance into `scratchSlot`, with its busy-poll parameters. */
export function emitEpoll(
  p: ProgramBuilder,
  s: Extract<FdSource, { kind: "epoll" }>,
  scratchSlot: number,
): void {
  p.op(SYS.epoll_create1, [O_CLOEXEC], { store: scratchSlot });
  if (!s.busyPoll) return;
  const [usecs, budget, prefer] = s.busyPoll;
  const b = new Uint8Array(8);
  const v = new DataView(b.buffer);
  v.setUint32(0, usecs, true);
  v.setUint16(4, budget, true);
  b[6] = prefer;
  p.op(SYS.ioctl, [slot(scratchSlot), EPIOCSPARAMS, p.data(b, 4)], {
    comment: `epoll busy poll: ${usecs} us, budget ${budget}, prefer ${prefer}`,
  });
}

/**
 * Files whose poll never reports EPOLLERR or EPOLLHUP: a fired EPOLLONESHOT
 * watch of one comes back exactly (added with its private bits alone).
 */
const NO_ERR_HUP = new Set<FdInfo["kind"]>(["eventfd", "timerfd", "signalfd"]);

/** Restore plan of an epoll fd. */
export function planEpoll(f: FdInfo, allFds: readonly FdInfo[]): FdSource | string {
  let targets;
  try {
    targets = epollTargets(f);
  } catch (e) {
    return (e as Error).message;
  }
  for (const t of targets) {
    if (t.at === -1) {
      const row = supportOf("fd.epoll-orphan");
      return `${row.what}: the watch of fd ${t.fd} (data ${t.data}); ${row.note}`;
    }
    const held = t.at ?? t.fd;
    const watched = allFds.find((x) => x.fd === held);
    if (!watched || watched.excluded) {
      return `watches fd ${held}, which is not restored (its watch cannot be re-added)`;
    }
    // Added again with no event bits it reports nothing but EPOLLERR and EPOLLHUP (epoll_ctl adds
    // both): exact for a file that never reports them.
    if (
      (t.events & EPOLLONESHOT) && !(t.events & ~EP_PRIVATE_BITS) && !NO_ERR_HUP.has(watched.kind)
    ) {
      const row = supportOf("fd.epoll-oneshot-fired");
      return `${row.what}: the watch of fd ${t.fd} (data ${t.data}); ${row.note}`;
    }
  }
  const params = f.extra["epoll-params"]?.split(",").map(Number);
  return {
    kind: "epoll",
    flags: f.flags,
    targets,
    ...(params?.length === 3 ? { busyPoll: params as [number, number, number] } : {}),
  };
}
