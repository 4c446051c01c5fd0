/**
 * Open file descriptions, and pipes, shared between processes of the tree
 * (after fork, a parent and its child share each inherited description:
 * its offset, flags, locks, counter...). Each such object is re-created
 * ONCE, by the lowest common ancestor of its holders, before that ancestor
 * forks its children, at a fixed "transfer" fd number above every fd of the
 * tree and without O_CLOEXEC, so it survives the forks and the execs of the
 * children's images; each holder then takes it from that number in its own
 * fd phase (source `transfer`, handled like an inherited fd), and every
 * process closes the transfer fds it does not use.
 *
 * It works for every fd kind: the creator creates a description with the
 * kind's own creation ops ({@link emitCreate}) from the plan of its first
 * holder, and sets its description state (flags, offset, flock/OFD locks).
 * What groups descriptions into one object:
 *
 * - a description held by several processes (dump: kcmp(KCMP_FILE) across
 *   pids, recorded as `FdInfo.description`);
 * - an anonymous pipe whose ends are held by several processes (both ends
 *   come from one pipe2());
 * - a FIFO opened by several processes (one read-write helper holds it open
 *   while its descriptions are opened by path).
 *
 * A kind whose fds need this only has to be planned by the kind planner the
 * caller passes in; fds of other kinds (sockets, ...) join automatically
 * through `FdInfo.description`.
 *
 * @module
 */

import { epollTargets } from "./epoll.ts";
import { SYS } from "../../ffi/sysno.ts";
import type { FdInfo, ProcessImage } from "../model.ts";
import { type SupportId, supportOf } from "../support.ts";
import type { ProgramBuilder } from "../program/builder.ts";
import { type CreateContext, createKey, emitCreate } from "./create.ts";
import { fifoId } from "./fifo.ts";
import { descriptionState, emitDescriptionState } from "./state.ts";
import { type FdSource, O_ASYNC, type PlannedFd } from "./types.ts";

/** One object re-created once in the tree and inherited by its holders. */
export interface SharedObject {
  /** "pipe:[ino]", "fifo:<dev>:<ino>" or "desc:<pid>:<fd>". */
  key: string;
  /** Pid that creates it before forking (lowest common ancestor of the holders). */
  creator: number;
  /** Its descriptions, each planned at its transfer fd number. */
  members: PlannedFd[];
  /** For each member, its first holder (whose fd it was planned from). */
  origins: { pid: number; fd: number }[];
  /**
   * Extra transfer numbers used while creating it (a FIFO's helper, the write
   * end of a pipe no one writes to any more), closed afterwards.
   */
  helpers: { key: string; fd: number }[];
}

/** The tree's shared objects and what each holder takes. */
export interface SharedPlan {
  /** Objects, each created by its creator. */
  objects: SharedObject[];
  /** pid -> fd -> the `transfer` source that fd of that process is restored from. */
  holders: Map<number, Map<number, FdSource>>;
  /** What cannot be shared as it was ("process P fd N (target): why"). */
  problems: string[];
  /**
   * pid -> epolls only a queued message holds whose watches that process
   * adds in its fd phase (it holds every watched file at its number),
   * through their transfer numbers, which it closes then.
   */
  watchers: Map<number, Extract<FdSource, { kind: "transfer" }>[]>;
}

/**
 * A description a message queued on a unix socket carries (unix_scm.ts):
 * created as a shared object, by an ancestor of `pids` too, so the
 * socket's creator can send it again. `ref`: the tree fd whose
 * description it is; `file`: one only the message holds (planned with the
 * pseudo holder -1 at fd -1 - its index among the `file` ones).
 */
export interface CarriedDescription {
  ref?: { pid: number; fd: number };
  file?: FdInfo;
  pids: number[];
}

/** Plans one fd by its kind (the fd kinds' planner, see mod.ts). */
export type KindPlanner = (f: FdInfo, proc: ProcessImage) => FdSource | string;

interface Holder {
  proc: ProcessImage;
  f: FdInfo;
}

const O_ACCMODE = 3;

/** Sources each holder still takes for itself: the restorer's stdio. */
const PER_HOLDER: ReadonlySet<FdSource["kind"]> = new Set(["inherit"]);

function refused(id: SupportId): string {
  const row = supportOf(id);
  return `${row.what}: ${row.note}`;
}

/** The object `f` belongs to, when it can be shared by processes; undefined otherwise. */
function groupKey(f: FdInfo): string | undefined {
  if (f.kind === "pipe") return f.restore === "inherit" ? undefined : f.target;
  if (f.kind === "fifo") return fifoId(f);
  return f.description ? `desc:${f.description}` : undefined;
}

function descriptionKey(pid: number, f: FdInfo): string {
  return f.description ?? `${pid}:${f.sameAs ?? f.fd}`;
}

function ancestors(pid: number, parent: Map<number, number>): number[] {
  const out = [pid];
  for (let p = parent.get(pid); p !== undefined; p = parent.get(p)) out.push(p);
  return out;
}

/**
 * Finds the objects shared between processes of the tree, who creates each
 * and at which transfer numbers (from `firstTransferFd` on, at least).
 * `plan` gives each description's source.
 */
export function planShared(
  images: readonly ProcessImage[],
  plan: KindPlanner,
  firstTransferFd = 0,
  carried: readonly CarriedDescription[] = [],
): SharedPlan {
  const parent = new Map<number, number>();
  for (const p of images) for (const c of p.children) parent.set(c, p.pid);
  const groups = new Map<string, Map<string, Holder[]>>();
  // Carried descriptions: their groups are shared, created above `pids` too.
  const forcedKey = new Map<FdInfo, string>();
  const forcedPids = new Map<string, number[]>();
  const carriedHolders: Holder[] = [];
  const carrier = { pid: -1, fds: [] } as unknown as ProcessImage; // the pseudo holder
  for (const c of carried) {
    const f = c.ref
      ? images.find((p) => p.pid === c.ref!.pid)?.fds.find((x) => x.fd === c.ref!.fd)
      : c.file
      ? {
        ...c.file,
        fd: -1 - carriedHolders.length,
        description: `carried:${carriedHolders.length}`,
      }
      : undefined;
    if (c.file) carriedHolders.push({ proc: carrier, f: f! });
    if (!f) continue;
    const g = groupKey(f) ?? `desc:${c.ref!.pid}:${c.ref!.fd}`;
    if (!groupKey(f)) forcedKey.set(f, g);
    forcedPids.set(g, [...forcedPids.get(g) ?? [], ...c.pids]);
  }
  const problems: string[] = [];
  let maxFd = 2;
  const holdersOf = images.map((proc) => ({ proc, fds: proc.fds }));
  holdersOf.push({ proc: carrier, fds: carriedHolders.map((h) => h.f) });
  for (const { proc, fds } of holdersOf) {
    for (const f of fds) {
      maxFd = Math.max(maxFd, f.fd);
      if (f.excluded) continue;
      const g = groupKey(f) ?? forcedKey.get(f);
      if (!g) continue;
      const descs = groups.get(g) ?? new Map<string, Holder[]>();
      const d = descriptionKey(proc.pid, f);
      descs.set(d, [...descs.get(d) ?? [], { proc, f }]);
      groups.set(g, descs);
    }
  }
  const shared: [string, Map<string, Holder[]>][] = [];
  for (const [g, descs] of groups) {
    const all = [...descs.values()].flat();
    if (g.startsWith("pipe:") && new Set(all.map((h) => h.proc.pid)).size > 1) {
      // Shared by the tree, both ends come from one pipe2(): one description per end (a process's
      // own pipe reopens the others, pipe.ts).
      for (const end of [0, 1, 2]) {
        const ends = [...descs.values()].filter((hs) => (hs[0].f.flags & O_ACCMODE) === end);
        if (ends.length > (end === 2 ? 0 : 1)) {
          const h = ends[end === 2 ? 0 : 1][0];
          problems.push(
            `process ${h.proc.pid} fd ${h.f.fd} (${h.f.target}): ${refused("fd.pipe-reopened")}`,
          );
        }
      }
    }
    if (new Set(all.map((h) => h.proc.pid)).size > 1 || forcedPids.has(g)) {
      shared.push([g, descs]);
    }
  }
  const transferCount = shared.reduce(
    (n, [g, descs]) => n + descs.size + (g.startsWith("fifo:") || g.startsWith("pipe:") ? 1 : 0),
    0,
  );
  // Above every fd of the tree and above any number a creator's own
  // creation syscalls can return meanwhile (0-2, the transfers, a helper
  // and a pipe pair), so a dup3 never targets itself or a live fd.
  let next = Math.max(maxFd + 1, 3 + transferCount + 4, firstTransferFd);
  const objects: SharedObject[] = [];
  const holders = new Map<number, Map<number, FdSource>>();
  const watchers: SharedPlan["watchers"] = new Map();
  for (const [key, descs] of shared) {
    const pids = [
      ...new Set([
        ...[...descs.values()].flat().map((h) => h.proc.pid),
        ...forcedPids.get(key) ?? [],
      ]),
    ].filter((pid) => pid >= 0);
    const chains = pids.map((pid) => ancestors(pid, parent));
    const creator = chains[0].find((a) => chains.every((c) => c.includes(a)))!;
    const obj: SharedObject = { key, creator, members: [], origins: [], helpers: [] };
    if (key.startsWith("fifo:")) obj.helpers.push({ key: `${key}:helper`, fd: next++ });
    // A pipe whose write end no one holds (its writers gone, pipe.ts) is refilled
    // through a write end kept at a helper number meanwhile.
    if (key.startsWith("pipe:") && ![...descs.values()].some((hs) => hs[0].f.flags & O_ACCMODE)) {
      obj.helpers.push({ key: `pipe:${key}:write`, fd: next++ });
    }
    for (const hs of descs.values()) {
      const base = hs[0];
      const source = plan(base.f, base.proc);
      // A refused description is named by its holders' own plans; one taken
      // from the restorer's stdio is taken so by each holder; see PER_HOLDER.
      if (typeof source === "string" || PER_HOLDER.has(source.kind)) continue;
      const fd = next++;
      const state = descriptionState(base.f, source);
      // O_ASYNC is set by the first holder, through its own fd number.
      const asyncFlags = state && (state.setfl & O_ASYNC) ? state.setfl : undefined;
      if (state && asyncFlags) state.setfl &= ~O_ASYNC;
      obj.members.push({ fd, source, ...(state ? { state } : {}) });
      obj.origins.push({ pid: base.proc.pid, fd: base.f.fd });
      const epollWatcher = base.proc === carrier ? base.f.extra["epoll-watcher"] : undefined;
      if (epollWatcher !== undefined && source.kind === "epoll") {
        // Made empty (the planner left its targets out); its watcher adds them.
        const pid = Number(epollWatcher);
        watchers.set(pid, [
          ...watchers.get(pid) ?? [],
          { kind: "transfer", from: fd, key, watches: epollTargets(base.f) },
        ]);
      }
      let watcher: Holder | undefined;
      if (source.kind === "epoll" && source.targets.length) {
        // Watches are (file, fd number) pairs: one holder that has every
        // watched fd number adds them back.
        // Each holder's own record says which of its fds holds each watched file (epoll.ts).
        watcher = hs.find((h) =>
          epollTargets(h.f).every((t) =>
            t.at !== -1 && h.proc.fds.some((x) => x.fd === (t.at ?? t.fd) && !x.excluded)
          )
        );
        if (!watcher) {
          problems.push(
            `process ${base.proc.pid} fd ${base.f.fd} (${base.f.target}): ${
              refused("fd.epoll-split")
            }`,
          );
        }
      }
      for (const h of hs) {
        if (h.f.sameAs !== undefined) continue; // planned as a duplicate in its process
        const first = h === hs[0];
        const byFd = holders.get(h.proc.pid) ?? new Map<number, FdSource>();
        byFd.set(h.f.fd, {
          kind: "transfer",
          from: fd,
          key,
          ...(h === watcher && source.kind === "epoll" ? { watches: epollTargets(h.f) } : {}),
          ...(first && asyncFlags ? { setfl: asyncFlags } : {}),
        });
        holders.set(h.proc.pid, byFd);
      }
    }
    objects.push(obj);
  }
  return { objects, holders, problems, watchers };
}

/** Established TCP connections last, after the listeners of their ports (as in mod.ts). */
function creationOrder(objects: SharedObject[]): SharedObject[] {
  const late = (o: SharedObject) =>
    o.members.some((m) => m.source.kind === "inet" && m.source.socket.state === "established");
  return [...objects.filter((o) => !late(o)), ...objects.filter(late)];
}

/**
 * Ops creating the shared objects `pid` is responsible for, each at its
 * transfer numbers with its description state (run before its children
 * are forked).
 */
export function emitSharedCreation(
  p: ProgramBuilder,
  plan: SharedPlan | undefined,
  pid: number,
  scratchSlot: number,
  slotsAddress: bigint,
): void {
  for (const obj of creationOrder(plan?.objects.filter((o) => o.creator === pid) ?? [])) {
    const target = new Map<string, number>(obj.helpers.map((h) => [h.key, h.fd]));
    for (const m of obj.members) target.set(createKey(m), m.fd);
    const kept = new Set<string>();
    const cx: CreateContext = {
      p,
      scratchSlot,
      scratchAddr: slotsAddress + BigInt(scratchSlot * 8),
      keep(key, comment) {
        kept.add(key);
        const fd = target.get(key);
        if (fd === undefined) {
          p.op(SYS.close, [{ slot: scratchSlot }], { comment: `${comment}: not restored` });
          return -1;
        }
        p.op(SYS.dup3, [{ slot: scratchSlot }, fd, 0], {
          comment: `${comment} -> ${fd}, shared in the tree`,
        });
        p.op(SYS.close, [{ slot: scratchSlot }]);
        return fd;
      },
      has: (key) => kept.has(key),
      current: (fd) => fd,
      numberOf: (key) => kept.has(key) ? target.get(key) : undefined,
    };
    for (const m of obj.members) emitCreate(cx, m, obj.members);
    for (const m of obj.members) if (m.state) emitDescriptionState(p, m.fd, m.state);
    for (const h of obj.helpers) p.op(SYS.close, [h.fd], { comment: `${obj.key} helper` });
  }
}
