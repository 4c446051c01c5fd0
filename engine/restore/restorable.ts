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
import { planUnixSockets } from "../fds/unix.ts";
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
  const ghosts = planGhosts(opts.ghosts ?? [], firstFreeFd(images) + ptys.length);
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
  const transferTop = Math.max(
    firstFreeFd(images) + ptys.length + ghosts.size,
    aboveShared(shared),
    unixSockets.maxFd + 1,
  );
  checkNofileRoom(images, transferTop, refusals);
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
 * Refuses a process whose fds leave no room under its hard RLIMIT_NOFILE
 * for the restore's own numbers: its fd phase makes each fd at a temporary
 * number above its highest fd (and above the tree's transfer numbers, up to
 * `transferTop`) before moving it down, and a number at or past the hard
 * limit is EMFILE/EINVAL at restore (an fd at 19999 under a limit of 20000).
 * The bound counts one temporary per fd: dups need none, so it may refuse a
 * few processes that would just fit.
 */
function checkNofileRoom(
  images: readonly ProcessImage[],
  transferTop: number,
  refusals: Refusals,
): void {
  for (const p of images) {
    const hard = p.rlimits.find((r) => r.resource === 7)?.hard;
    if (hard === undefined || hard === "inf" || p.fds.length === 0) continue;
    const own = Math.max(...p.fds.map((f) => f.fd)) + 1;
    const needed = Math.max(own, transferTop) + p.fds.length;
    if (needed > hard) {
      refusals.use(
        "fd.nofile-room",
        `process ${p.pid}: its highest fd is ${own - 1}, the restore needs fd numbers up to ${
          needed - 1
        } and its hard RLIMIT_NOFILE is ${hard}`,
      );
    }
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
