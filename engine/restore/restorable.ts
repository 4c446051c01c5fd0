/**
 * The restorability check shared by dump and restore: every process of a
 * tree is compiled exactly as a restore would compile it, and whatever the
 * compiler (or a resource kind's planner) cannot re-create is collected as
 * one line per resource. A dump runs it while the tree is still frozen, so
 * a tree that could not come back is never killed.
 *
 * @module
 */

import type { GhostFile, ProcessImage } from "../model.ts";
import { planGhosts, type PlannedGhosts } from "../fds/ghost.ts";
import { UnsupportedError } from "../errors.ts";
import { Refusals } from "../support.ts";
import { planSharedObjects, type SharedPlan } from "../fds/mod.ts";
import { checkTtys, type PlannedPty, planPtys } from "../fds/tty.ts";
import { planUnixSockets, type UnixTreePlan } from "../fds/unix.ts";
import { checkPidfds } from "../fds/pidfd.ts";
import { checkGroupsAndSessions } from "../task/groups.ts";
import { checkContinued } from "../task/continued.ts";
import { type CompiledProcess, compileProcess } from "./compile.ts";

/** Where each image of the tree lives (or would live) and the user's fd overrides. */
export interface TreeCompileOptions {
  /** Absolute image path of a process. */
  pathOf: (pid: number) => string;
  /** Root pid of the tree (fd overrides apply to it). */
  rootPid: number;
  /** `--inherit-fd` overrides of the root. */
  inheritFds?: Map<number, string>;
  /** The tree's ghost files (deleted files and memfds saved by content). */
  ghosts?: readonly GhostFile[];
  /** Lazy restore (engine/memory/lazy.ts). */
  lazy?: boolean;
  /**
   * The dump's check: the same verdict, but the programs are only sized, not
   * encoded (compile.ts `CompileOptions.checkOnly`); their bytes are zeros.
   */
  checkOnly?: boolean;
}

/** Every process of a tree compiled, and what the engine itself provides to the tree. */
export interface CompiledTree {
  /** Compiled processes by pid. */
  processes: Map<number, CompiledProcess>;
  /** Pseudo-terminals whose masters the engine opens and hands to the tree. */
  ptys: PlannedPty[];
  /** Deleted files and memfds the engine re-creates and hands to the tree. */
  ghosts: PlannedGhosts;
}

/**
 * Compiles every process of a tree; throws one UnsupportedError naming
 * every resource of every process that cannot be restored.
 */
export function compileTree(
  images: readonly ProcessImage[],
  opts: TreeCompileOptions,
  refusals = new Refusals(),
): CompiledTree {
  // Pty masters and ghost files come from the engine at transfer fds above
  // every fd of the tree; descriptions shared in the tree get theirs above those.
  const ptys = planPtys(images, firstFreeFd(images));
  const ghosts = planGhosts(opts.ghosts ?? [], firstFreeFd(images) + ptys.length, images);
  checkTtys(images, refusals);
  const shared = planSharedObjects(images, ptys, ghosts);
  for (const line of shared.problems) refusals.add(line);
  checkPidfds(images, refusals);
  checkGroupsAndSessions(images, refusals, opts.checkOnly === true);
  checkContinued(images, refusals);
  const byPid = new Map(images.map((i) => [i.pid, i]));
  // Unix sockets get their transfer fds above all of those.
  const unixSockets = planUnixSockets(
    images,
    Math.max(firstFreeFd(images) + ptys.length + ghosts.size, aboveShared(shared)),
    refusals,
    shared,
  );
  checkTransferLimit(images, ptys.length + ghosts.size, shared, unixSockets, refusals);
  const out = new Map<number, CompiledProcess>();
  for (const image of images) {
    try {
      out.set(
        image.pid,
        compileProcess(image, {
          imagePath: opts.pathOf(image.pid),
          childImages: new Map(image.children.map((c) => [c, opts.pathOf(c)])),
          inheritFds: image.pid === opts.rootPid ? opts.inheritFds : undefined,
          root: image.pid === opts.rootPid,
          rootPid: opts.rootPid,
          rootInheritFds: opts.inheritFds,
          shared,
          ptys,
          ghosts,
          images: byPid,
          unixSockets,
          lazy: opts.lazy,
          checkOnly: opts.checkOnly,
        }),
      );
    } catch (e) {
      if (!(e instanceof UnsupportedError)) throw e;
      for (const item of e.items) refusals.add(`process ${image.pid} ${item}`);
    }
  }
  refusals.throwIfAny("the tree cannot be restored");
  return { processes: out, ptys, ghosts };
}

/**
 * Refuses a tree whose transfer fds (above every fd of the tree) would
 * pass a NOFILE hard limit: a process's, or cryo's own for the ptys and
 * deleted files it hands over.
 */
function checkTransferLimit(
  images: readonly ProcessImage[],
  provided: number,
  shared: SharedPlan,
  unix: UnixTreePlan,
  refusals: Refusals,
): void {
  const first = firstFreeFd(images);
  const top = Math.max(first + provided, aboveShared(shared), unix.maxFd + 1);
  if (top <= first) return; // nothing handed over
  const hardOf = (i: ProcessImage) => {
    const hard = i.rlimits.find((r) => r.resource === 7)?.hard;
    return hard === undefined || hard === "inf" ? Infinity : hard;
  };
  const tight = images.filter((i) => hardOf(i) < top);
  const own = provided ? ownNofileHard() : Infinity;
  for (const i of tight) {
    refusals.use(
      "fd.transfer-limit",
      `process ${i.pid}`,
      `its fds reach ${first - 1}, the transfer fds ${top - 1}, over its NOFILE hard limit ${
        hardOf(i)
      }`,
    );
  }
  if (!tight.length && own < top + provided) {
    refusals.use(
      "fd.transfer-limit",
      "cryo",
      `the tree's fds reach ${first - 1}, the ptys and deleted files it hands over ${
        top - 1
      }, over cryo's own NOFILE hard limit ${own}`,
    );
  }
}

/** cryo's own NOFILE hard limit (from /proc/self/limits; Infinity when unlimited or unreadable). */
function ownNofileHard(): number {
  try {
    const line = Deno.readTextFileSync("/proc/self/limits").split("\n")
      .find((l) => l.startsWith("Max open files"));
    const hard = line?.split(/\s{2,}/)[2];
    return hard && /^\d+$/.test(hard) ? Number(hard) : Infinity;
  } catch {
    return Infinity;
  }
}

/** The lowest fd number above every transfer fd of the shared objects. */
function aboveShared(shared: SharedPlan): number {
  const fds = shared.objects.flatMap((
    o,
  ) => [...o.members.map((m) => m.fd), ...o.helpers.map((h) => h.fd)]);
  return Math.max(0, ...fds) + 1;
}

/** The lowest fd number above every fd of the tree. */
function firstFreeFd(images: readonly ProcessImage[]): number {
  let max = 2;
  for (const p of images) for (const f of p.fds) max = Math.max(max, f.fd);
  return max + 1;
}
