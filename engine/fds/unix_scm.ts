/**
 * Fds in flight: file descriptors passed (SCM_RIGHTS) in messages still
 * queued on a unix socket of the tree.
 *
 * **Dump** (`resolveInFlightFds`, a tree pass once every process's fds are
 * known): the queue of each socket whose peek (socket_common.ts) counted
 * passed fds is peeked again with the fds kept (ffi/socket.ts; nothing is
 * consumed); cryo's copies of every queue's fds stay open until the pass
 * ends. Each is either the open file description of a tree fd (same
 * inode, then kcmp(KCMP_FILE)): a `ref` to that fd; or a description only
 * messages hold, saved like a tree fd when it is a kind that can stand
 * alone (a regular file or directory by path with offset and flags, an
 * eventfd, signalfd or timerfd, a named POSIX message queue, a pipe end
 * whose other end is in the tree, in flight too, or gone, a unix socket
 * described like the tree's without fds in flight itself, a TCP listener
 * or unconnected TCP/UDP socket read by the dump's inet session); anything
 * else refuses the socket (`socket.unix-scm`), naming the kind, the socket
 * and the message. One description several messages carry (kcmp between
 * cryo's copies) is saved once: its first entry in the restore's reading
 * order keeps the `file` with an `id`, the others name it (`again`).
 *
 * **Restore**: every carried description becomes an object of the shared
 * plan (shared.ts), created before the tree's unix sockets by an ancestor
 * of all their holders, at a transfer fd (`carriedDescriptions`); a ref
 * shares it with its tree holder. A carried unix socket joins the group of
 * the socket whose queue holds it (unix.ts), made with it. The socket's creator sends each message
 * again with an SCM_RIGHTS part naming those transfer fds
 * (`carriedFdNumbers`, socket_common.ts `emitRefill`), so boundaries and
 * the fd set of each message stay as they were; the transfer fds are
 * closed in each process's fd phase.
 *
 * @module
 */

import { isMqueueFd, mqueueInFlight } from "./mqueue.ts";
import { inFlightEpollWatcher } from "./epoll.ts";
import { peekQueue } from "../../ffi/socket.ts";
import { withTargetFd } from "../../ffi/pidfd.ts";
import { closeFd } from "../../ffi/net.ts";
import { decodeBase64 } from "../base64.ts";
import type { FdInfo, InFlightFd, ProcessImage, QueuedMessage, UnixSocketImage } from "../model.ts";
import { statProc } from "../proc/io.ts";
import { REFUSED_PREFIX } from "./inet.ts";
import { type SupportId, supportOf } from "../support.ts";
import { type ProcFd, readFd } from "../proc/fds.ts";
import { compareFiles } from "./descriptions.ts";
import { collectPipe, pipeEndAlone } from "./pipe.ts";
import type { CarriedDescription, SharedPlan } from "./shared.ts";

const SOCK_STREAM = 1;
const SOCK_DGRAM = 2;
const O_ACCMODE = 3;

/** One process of the tree as the dump pass sees it. */
export interface InFlightProcess {
  pid: number;
  fds: FdInfo[];
  /** The /proc fds `fds` were made from (inode of each). */
  proc: readonly ProcFd[];
}

/**
 * Describes fd `f` of process `pid` like an fd of the tree (the dump's own
 * fd reader; an IPv4/IPv6 socket's state too, engine/fds/inet_session.ts).
 */
export type FdDescriber = (pid: number, f: ProcFd) => FdInfo;

/** Kinds a description only a message holds can be saved as. */
const STANDALONE = new Set(["file", "directory", "pipe", "eventfd", "signalfd", "timerfd"]);

/** A description only messages hold (its first copy), and the messages' entries for it. */
interface Standalone {
  /** cryo's copy (closed at the end of the pass). */
  copy: number;
  file: FdInfo;
  /** The entries naming it (one per message slot it fills). */
  entries: InFlightFd[];
  /** Where its first entry is (for a refusal), and the socket that holds it. */
  where: string;
  u: UnixSocketImage;
  /** Refused (its socket names why): its entries stay unidentified. */
  dropped?: boolean;
}

/**
 * Identifies the fds in flight in the queues of the tree's unix sockets
 * (see the module doc). A socket whose fds cannot all be saved gets
 * `refused` (the tree plan refuses it by name). `describe` describes a
 * standalone one. Every socket's copies stay open until the end, so one
 * description sent in several messages is saved once (kcmp), and the two
 * ends of a pipe no process holds are found in any queues.
 */
export function resolveInFlightFds(
  procs: readonly InFlightProcess[],
  describe: FdDescriber,
): void {
  const copies: number[] = [];
  try {
    const peeked: { u: UnixSocketImage; passed: number[][] }[] = [];
    for (const { pid, fds } of procs) {
      for (const f of fds) {
        const u = f.socket?.unix;
        if (!u || u.refused || f.excluded || !u.queue.some((m) => m.fds?.length)) continue;
        const problem = withTargetFd(pid, f.fd, (copy) => {
          const messages = peekRecordedQueue(copy, f.socket!.type, u);
          const passed = messages.map((m) => m.fds ?? []);
          copies.push(...passed.flat());
          peeked.push({ u, passed });
          return streamAmbiguity(f.socket!.type === SOCK_STREAM, u.queue);
        });
        if (problem) u.refused = { id: "socket.unix-scm", detail: problem };
      }
    }
    const standalone: Standalone[] = [];
    for (const { u, passed } of peeked) {
      if (u.refused) continue;
      const problem = identifyQueue(u, passed, procs, describe, standalone);
      if (problem) u.refused = { id: "socket.unix-scm", detail: problem };
    }
    settlePipes(standalone, procs);
    numberStandalone(procs, standalone);
  } finally {
    for (const fd of copies) closeFd(fd);
  }
}

/**
 * A stream's fds are delivered with the first byte a read takes of the
 * buffer that carried them; a peek cannot show where that buffer begins
 * (it runs on past the bytes asked for to the next buffer with fds), so
 * only a one-byte message with fds is known to be exactly one buffer. Any
 * longer one could hold bytes sent before it without fds, which a reader
 * would then get with the fds: refused, not restored differently.
 */
function streamAmbiguity(stream: boolean, queue: readonly QueuedMessage[]): string | undefined {
  if (!stream) return undefined;
  const at = queue.findIndex((m) => m.fds?.length && decodeBase64(m.data).length > 1);
  if (at < 0) return undefined;
  const n = decodeBase64(queue[at].data).length;
  return `message ${at + 1} of its queue carries fds with ${n} bytes of a stream, ` +
    "which may include bytes sent before it without fds (where its fds begin cannot be seen)";
}

/** Fills in the fds of `u`'s queue from `passed` (cryo's copies, per message); or says why not. */
function identifyQueue(
  u: UnixSocketImage,
  passed: number[][],
  procs: readonly InFlightProcess[],
  describe: FdDescriber,
  standalone: Standalone[],
): string | undefined {
  const queue = u.queue;
  const shape = (n: number[]) => n.join(",");
  if (shape(queue.map((m) => m.fds?.length ?? 0)) !== shape(passed.map((p) => p.length))) {
    return "its queue looked different when peeked again";
  }
  for (const [i, m] of queue.entries()) {
    for (const [j, fd] of passed[i].entries()) {
      const where = `message ${i + 1} of its queue, passed fd ${j + 1}`;
      const again = standalone.find((s) => sameDescription(s.copy, fd));
      if (again) {
        const entry: InFlightFd = { file: again.file };
        again.entries.push(entry);
        m.fds![j] = entry;
        continue;
      }
      const found = identify(fd, procs, describe);
      if (typeof found === "string") return `${where}: ${found}`;
      m.fds![j] = found;
      // Unix sockets are one by their inode (unix.ts); every other description by kcmp.
      if (found.file && !found.file.socket?.unix) {
        standalone.push({ copy: fd, file: found.file, entries: [found], where, u });
      }
    }
  }
  return undefined;
}

/** Whether cryo's copies `a` and `b` are one open file description. */
function sameDescription(a: number, b: number): boolean {
  const x = statProc(Deno.pid, `fd/${a}`);
  const y = statProc(Deno.pid, `fd/${b}`);
  return x.dev === y.dev && x.ino === y.ino && compareFiles(Deno.pid, a, Deno.pid, b) === 0;
}

/**
 * A pipe end only messages hold is made again with its pipe when the
 * pipe's other end is in the tree or in flight too, or is gone (no writer
 * left for a read end, no reader for a write end: the pipe is made and that
 * end closed). One whose other end a process outside the tree may hold, or
 * a second description of one end, refuses its socket.
 */
function settlePipes(standalone: readonly Standalone[], procs: readonly InFlightProcess[]): void {
  const pipes = standalone.filter((s) => s.file.kind === "pipe" && !s.u.refused);
  for (const s of pipes) {
    const target = s.file.target;
    const tree = procs.flatMap((p) =>
      p.fds.filter((x) => x.target === target && !x.excluded).map((x) => ({ pid: p.pid, x }))
    );
    const flying = pipes.filter((o) => o.file.target === target);
    const mine = s.file.flags & O_ACCMODE;
    const kind = `a pipe (${target})`;
    const twin = flying.find((o) => o !== s && (o.file.flags & O_ACCMODE) === mine);
    const refuse = (detail: string) => {
      s.u.refused = { id: "socket.unix-scm", detail: `${s.where}: ${kind} ${detail}` };
      s.dropped = true;
      for (const e of s.entries) delete e.file;
    };
    if (twin || mine === 2) {
      refuse(mine === 2 ? "opened read-write" : "with another description of that end in flight");
      continue;
    }
    const modes = [...tree.map((t) => t.x.flags), ...flying.map((o) => o.file.flags)]
      .reduce((n, f) => n | (1 << (f & O_ACCMODE)), 0);
    if (modes !== 0b11 && !pipeEndAlone(s.copy, mine)) {
      refuse("whose other end is not in the tree (a process outside may hold it)");
      continue;
    }
    s.file.restore = "tree";
    if (mine === 0) Object.assign(s.file.extra, collectPipe(Deno.pid, s.copy, 0));
    for (const { pid, x } of tree) {
      if (x.restore === "tree") continue;
      x.restore = "tree";
      Object.assign(x.extra, collectPipe(pid, x.fd, x.flags));
    }
  }
}

/**
 * Numbers the descriptions only messages hold, in the order the restore
 * reads the queues: the first entry of each keeps its `file` with an `id`,
 * the others name that id (`again`), so it is made once.
 */
function numberStandalone(
  procs: readonly InFlightProcess[],
  standalone: readonly Standalone[],
): void {
  const of = new Map<InFlightFd, Standalone>();
  for (const s of standalone) if (!s.dropped) { for (const e of s.entries) of.set(e, s); }
  const ids = new Map<Standalone, number>();
  for (const m of queuedWithFds(procs)) {
    for (const c of m.fds!) {
      const s = of.get(c);
      if (!s) continue;
      const id = ids.get(s);
      if (id === undefined) {
        ids.set(s, ids.size);
        c.file = s.file;
        if (s.entries.length > 1) c.id = ids.size - 1;
      } else {
        delete c.file;
        c.again = id;
      }
    }
  }
}

/** What cryo's copy `fd` of a passed fd is: a tree fd's description, a standalone one, or why not. */
function identify(
  fd: number,
  procs: readonly InFlightProcess[],
  describe: FdDescriber,
): InFlightFd | string {
  const mine = readFd(Deno.pid, fd);
  const kind = `${/^[aeiou]/.test(mine.kind) ? "an" : "a"} ${mine.kind} (${mine.target})`;
  for (const { pid, fds, proc } of procs) {
    for (const pf of proc) {
      if (pf.stat.dev !== mine.stat.dev || pf.stat.ino !== mine.stat.ino) continue;
      const info = fds.find((x) => x.fd === pf.fd);
      if (!info || info.excluded || compareFiles(Deno.pid, fd, pid, pf.fd) !== 0) continue;
      // Sockets are made by the unix plan (unix.ts); other families are not carried.
      if (info.kind === "socket" && !info.socket?.unix && !info.inet) {
        return `${kind} cannot be saved in flight`;
      }
      return { ref: { pid, fd: info.sameAs ?? info.fd } };
    }
  }
  if (mine.kind === "socket") return inFlightSocket(describe(Deno.pid, mine), kind);
  // A POSIX message queue shows as a file named after it (fds/mqueue.ts): opened by its name.
  if (isMqueueFd(Deno.pid, fd)) {
    const mqueue = mqueueInFlight(fd, mine.target, new Set(procs.map((p) => p.pid)));
    if (typeof mqueue === "string") return mqueue;
    return { file: { ...describe(Deno.pid, mine), fd: -1, kind: "mqueue", mqueue } };
  }
  if (mine.kind === "epoll") {
    // Made empty by the shared plan; one process holding every watched file at its number adds
    // the watches back (shared.ts `watchers`).
    const file = describe(Deno.pid, mine);
    const problem = inFlightEpollWatcher(fd, file, procs);
    if (problem) {
      return `${kind} no process of the tree holds cannot be saved in flight: ${problem}`;
    }
    file.fd = -1;
    return { file };
  }
  if (!STANDALONE.has(mine.kind) || mine.deleted) {
    return `${kind} no process of the tree holds cannot be saved in flight`;
  }
  const file = describe(Deno.pid, mine);
  file.fd = -1;
  return { file };
}

/** A unix socket only a message holds, described (with its state) by the dump; or why not. */
function inFlightSocket(file: FdInfo, kind: string): InFlightFd | string {
  const u = file.socket?.unix;
  if (file.inet) {
    // A connection's repair-mode copy is kept by the dump's inet session like a tree fd's; the
    // restore ends its repair mode through a peeked copy (inet_plan.ts finishInetSockets).
    file.fd = -1;
    return { file };
  }
  if (file.restore.startsWith(REFUSED_PREFIX)) {
    const why = supportOf(file.restore.slice(REFUSED_PREFIX.length) as SupportId);
    return `${kind} cannot be saved in flight: ${why.what}${
      file.extra["refused"] ? ` (${file.extra["refused"]})` : ""
    }`;
  }
  if (!u) return `${kind} cannot be saved in flight (not a socket cryo knows)`;
  if (u.refused) return `${kind}: ${u.refused.detail}`;
  if (u.queue.some((m) => m.fds?.length)) {
    return `${kind} that has fds in flight itself cannot be saved in flight`;
  }
  file.fd = -1;
  return { file };
}

// ---------------------------------------------------------------- restore

/**
 * The descriptions the queued messages of `images` carry, for the shared
 * plan: each created by an ancestor of every holder of a unix socket of
 * the tree (so before any of them is made). Standalone ones are numbered
 * by their order here.
 */
export function carriedDescriptions(images: readonly ProcessImage[]): CarriedDescription[] {
  const holders = images.filter((p) => p.fds.some((f) => f.socket?.unix && !f.excluded))
    .map((p) => p.pid);
  const out: CarriedDescription[] = [];
  for (const m of queuedWithFds(images)) {
    for (const c of m.fds!) {
      if (isSocket(images, c)) continue; // made by the unix plan
      if (c.ref) out.push({ ref: c.ref, pids: holders });
      else if (c.file) {
        // An epoll's watches are added back by its watcher (epoll.ts inFlightEpollWatcher).
        const watcher = c.file.extra["epoll-watcher"];
        out.push({ file: c.file, pids: watcher ? [...holders, Number(watcher)] : holders });
      }
    }
  }
  return out;
}

/** The unix socket inode an fd in flight is (a tree fd's or its own), if it is one. */
export function carriedSocket(images: readonly ProcessImage[], c: InFlightFd): number | undefined {
  const f = c.ref
    ? images.find((p) => p.pid === c.ref!.pid)?.fds.find((x) => x.fd === c.ref!.fd)
    : c.file;
  return f?.socket?.unix?.ino;
}

function isSocket(images: readonly ProcessImage[], c: InFlightFd): boolean {
  return carriedSocket(images, c) !== undefined;
}

/** The queued messages with fds, in image, fd and queue order (dump and restore alike). */
function queuedWithFds(images: readonly { fds: readonly FdInfo[] }[]): QueuedMessage[] {
  return images.flatMap((p) =>
    p.fds.flatMap((f) => f.excluded || f.sameAs !== undefined ? [] : (f.socket?.unix?.queue ?? []))
  ).filter((m) => m.fds?.length);
}

/** An fd a message sends again: a transfer fd, or the unix socket of that inode (unix.ts). */
export type CarriedFd = number | { ino: number };

/**
 * The transfer fds the messages of the tree send again (by message), or a
 * problem per message that cannot carry its fds (an fd that is not
 * identified, a description the shared plan does not create).
 */
export function carriedFdNumbers(
  images: readonly ProcessImage[],
  shared: SharedPlan | undefined,
): Map<QueuedMessage, CarriedFd[] | string> {
  const out = new Map<QueuedMessage, CarriedFd[] | string>();
  // The standalone number of each description carried several times (by its id).
  const byId = new Map<number, number>();
  let count = 0;
  for (const m of queuedWithFds(images)) {
    for (const c of m.fds!) {
      if (!c.file || isSocket(images, c)) continue;
      if (c.id !== undefined) byId.set(c.id, count);
      count++;
    }
  }
  let standalone = 0;
  for (const m of queuedWithFds(images)) {
    const numbers: CarriedFd[] = [];
    let problem: string | undefined;
    for (const c of m.fds!) {
      const ino = carriedSocket(images, c);
      if (ino !== undefined) {
        numbers.push({ ino });
        continue;
      }
      const again = c.again !== undefined ? byId.get(c.again) : undefined;
      const source = c.ref
        ? shared?.holders.get(c.ref.pid)?.get(c.ref.fd)
        : c.file
        ? shared?.holders.get(CARRIED_PID)?.get(carriedFd(standalone++))
        : again !== undefined
        ? shared?.holders.get(CARRIED_PID)?.get(carriedFd(again))
        : undefined;
      if (source?.kind === "transfer") numbers.push(source.from);
      else {
        problem ??= c.ref
          ? `the description of process ${c.ref.pid} fd ${c.ref.fd} it carries cannot be sent again (it is taken from the restorer's stdio)`
          : c.file
          ? `the ${c.file.kind} (${c.file.target}) it carries cannot be made again`
          : "an fd it carries was not identified at dump";
      }
    }
    out.set(m, problem ?? numbers);
  }
  return out;
}

/** The pseudo holder of standalone carried descriptions in `SharedPlan.holders`. */
export const CARRIED_PID = -1;

/** The pseudo fd number of the `i`th standalone carried description. */
export function carriedFd(i: number): number {
  return -1 - i;
}

/**
 * The descriptions only the messages queued on `image`'s unix sockets
 * hold (their records, at fd -1), each once.
 */
export function carriedFiles(image: ProcessImage): FdInfo[] {
  return image.fds.flatMap((f) =>
    f.excluded || f.sameAs !== undefined ? [] : (f.socket?.unix?.queue ?? [])
  ).flatMap((m) => m.fds ?? []).flatMap((c) => c.file ?? []);
}

/**
 * Restore, once every restore program ran and before the tree goes on: runs
 * `fn` on a copy of each TCP connection only a queued message holds, taken
 * by peeking (nothing consumed) the queue of the unix socket that carries
 * it (`where` names the message). Its record is `file`. Throws when a
 * queue does not hold the messages it was refilled with.
 */
export function withCarriedConnections(
  images: readonly ProcessImage[],
  fn: (copy: number, file: FdInfo, where: string) => void,
): void {
  const done = new Set<number>();
  for (const image of images) {
    for (const f of image.fds) {
      const u = f.socket?.unix;
      if (f.excluded || f.sameAs !== undefined || !u || done.has(u.ino)) continue;
      const wanted = u.queue.map((m) => (m.fds ?? []).map((c) => c.file?.inet?.tcp && c.file));
      if (!wanted.flat().some(Boolean)) continue;
      done.add(u.ino);
      withTargetFd(image.pid, f.fd, (copy) => {
        const peeked = peekRecordedQueue(copy, f.socket!.type, u);
        try {
          const shape = (n: number[]) => n.join(",");
          if (shape(wanted.map((w) => w.length)) !== shape(peeked.map((m) => m.fds?.length ?? 0))) {
            throw new Error(
              `process ${image.pid} fd ${f.fd}: its queue does not hold the messages it was refilled with`,
            );
          }
          for (const [i, w] of wanted.entries()) {
            for (const [j, file] of w.entries()) {
              if (file) {
                fn(
                  peeked[i].fds![j],
                  file,
                  `a connection in flight on process ${image.pid} fd ${f.fd}`,
                );
              }
            }
          }
        } finally {
          for (const m of peeked) for (const fd of m.fds ?? []) closeFd(fd);
        }
      });
    }
  }
}

/**
 * The messages (with their rights kept) that socket `copy` of type `type`
 * holds, peeked as far as the queue image `u` recorded them: its bytes for
 * a stream or sequenced-packet socket, its message count, the end at a
 * shut-down read side.
 */
function peekRecordedQueue(copy: number, type: number, u: UnixSocketImage) {
  const bytes = u.queue.reduce((n, m) => n + decodeBase64(m.data).length, 0);
  return peekQueue(
    copy,
    type === SOCK_STREAM,
    type === SOCK_DGRAM ? undefined : bytes,
    (u.shutdown & 1) !== 0,
    u.queue.length,
    true,
  );
}
