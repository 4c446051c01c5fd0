/**
 * Types shared by the per-kind fd modules: how a restored fd is re-created
 * ({@link FdSource}).
 *
 * @module
 */

import type { InetSocket, NetlinkSocket, PacketSocket } from "../model.ts";
import type { EpollWatch } from "./epoll.ts";

/** How one fd of a restored process is re-created. */
export type FdSource =
  /**
   * `via`: the path reopens this transfer fd (/proc/self/fd/<via>), which must stay open until then;
   * `own`: the transfer fd's description itself is taken (dup), not a reopen (a memfd's own).
   */
  | { kind: "open"; path: string; flags: number; via?: number; own?: boolean }
  | { kind: "inherit"; from: number }
  | { kind: "same"; as: number }
  | {
    kind: "pipe";
    id: string;
    end: "read" | "write";
    flags: number;
    data?: string;
    size?: number;
    /** Sizes of the packets (O_DIRECT writes) at the head of `data`; the rest is plain. */
    packets?: number[];
    /** "uid:gid" the pipe is created with, when not root's. */
    owner?: string;
    /**
     * Another description of this pipe held by the same process (opened
     * through /proc/self/fd: its access mode is in `flags`, O_RDWR too):
     * its rank among them, from 1, reopened from the pipe's read end.
     */
    reopen?: number;
  }
  | { kind: "eventfd"; count: string; semaphore: boolean; flags: number }
  /** A named POSIX message queue opened again by name (engine/fds/mqueue.ts). */
  | { kind: "mqueue"; name: string; flags: number }
  | {
    kind: "timerfd";
    clockid: number;
    flags: number;
    value: [number, number];
    interval: [number, number];
    /** Expirations not yet read (decimal); absent in plans of older images. */
    ticks?: string;
    /** timerfd_settime flags (TFD_TIMER_ABSTIME 1, TFD_TIMER_CANCEL_ON_SET 2). */
    settimeFlags?: number;
  }
  | { kind: "signalfd"; mask: string; flags: number }
  | {
    kind: "epoll";
    flags: number;
    targets: EpollWatch[];
    /** EPIOCSPARAMS: busy_poll_usecs, busy_poll_budget, prefer_busy_poll, when set. */
    busyPoll?: [number, number, number];
  }
  | {
    kind: "fifo";
    id: string;
    path: string;
    flags: number;
    data?: string;
    size?: number;
    /** Sizes of the packets (O_DIRECT writes) at the head of `data`; the rest is plain. */
    packets?: number[];
    /** Its path was removed: made again there with this mode and owner, then unlinked. */
    deleted?: { mode: number; uid: number; gid: number };
  }
  | {
    kind: "transfer";
    /** Transfer fd number the description waits at (see shared.ts). */
    from: number;
    /** Key of the shared object, for plans. */
    key: string;
    /** Watches this holder adds to a shared epoll (one holder adds them). */
    watches?: EpollWatch[];
    /**
     * Status flags this holder sets with O_ASYNC: the kernel reports the fd
     * number O_ASYNC was set through in each signal (si_fd), so one holder
     * sets it through its own number.
     */
    setfl?: number;
  }
  /** An inotify instance and its watches, by wd (engine/fds/inotify.ts). */
  /** `via`: a deleted inode's watch is added through this ghost transfer fd (/proc/self/fd/<via>). */
  | {
    kind: "inotify";
    flags: number;
    watches: { wd: number; mask: number; path: string; via?: number }[];
  }
  /**
   * A pty slave fd hung up with its pty gone (its master closed): a slave of
   * a new pty, hung up (TIOCVHANGUP) before its master is closed
   * (engine/fds/tty.ts).
   */
  | { kind: "hungup-tty"; flags: number }
  /**
   * A pidfd of process (or thread) `pid` of the tree, or (pid -1, with the
   * wait status `exit`) of a process that exited and was reaped; `sameAs`:
   * the dump's pidfs inode of such a process when the holder has several
   * descriptions of it (engine/fds/pidfd.ts).
   */
  | { kind: "pidfd"; pid: number; flags: number; exit?: number; sameAs?: number }
  | { kind: "inet"; socket: InetSocket; flags: number }
  | { kind: "netlink"; socket: NetlinkSocket; flags: number }
  | { kind: "packet"; socket: PacketSocket; flags: number };

/** A planned fd: its number and source. */
export interface PlannedFd {
  fd: number;
  source: FdSource;
  /**
   * State of the open file description set once it exists (status flags,
   * offset, flock/OFD locks); absent when another holder (or the tree's
   * creator of a shared description) sets it.
   */
  state?: DescriptionState;
  /**
   * Taken only for the fd phase's work on it (the watches of an epoll only a
   * queued message holds, shared.ts `watchers`), then closed.
   */
  closeAfter?: boolean;
}

/** State that belongs to an open file description rather than to an fd. */
export interface DescriptionState {
  /** Exact F_SETFL status flags (O_APPEND, O_NONBLOCK, O_ASYNC, O_DIRECT, O_NOATIME). */
  setfl: number;
  /** Opened O_PATH: no status flags to set (F_SETFL fails on it). */
  pathOnly?: true;
  /**
   * File offset to lseek to (regular files and directories reopened by
   * path); a bigint past 2^53 (ext4 directory hash cookies).
   */
  pos?: number | bigint;
  /** flock and OFD locks held through this description. */
  locks?: FileLock[];
}

/** One file lock as /proc shows it (fdinfo "lock:" lines). */
export interface FileLock {
  /**
   * FLOCK, POSIX, OFDLCK, or LEASE (an active lease: fcntl F_SETLEASE; one
   * being broken, and delegations, are refused).
   */
  class: "FLOCK" | "POSIX" | "OFDLCK" | "LEASE";
  /** READ or WRITE. */
  type: "READ" | "WRITE";
  /** First byte. */
  start: number;
  /** Last byte, or "EOF" for a lock to the end of the file. */
  end: number | "EOF";
}

/** Open-file status flags that F_SETFL can change. */
export const SETFL_MASK = 0o2000 | 0o4000 | 0o20000 | 0o40000 | 0o1000000; // APPEND NONBLOCK ASYNC DIRECT NOATIME
/** O_ASYNC. */
export const O_ASYNC = 0o20000;
/** O_NONBLOCK. */
export const O_NONBLOCK = 0o4000;
/** O_CLOEXEC. */
export const O_CLOEXEC = 0o2000000;
