/**
 * The restorability check shared by dump and restore: every process of a
 * tree is compiled exactly as a restore would compile it, and whatever the
 * compiler (or a resource kind's planner) cannot re-create is collected as
 * one line per resource. A dump runs it while the tree is still frozen, so
 * a tree that could not come back is never killed.
 *
 * @module
 */

import type { ProcessImage } from "../model.ts";
import { UnsupportedError } from "../errors.ts";
import { Refusals } from "../support.ts";
import { planSharedPipes } from "../fds/shared_pipes.ts";
import { planUnixSockets } from "../fds/unix.ts";
import { type CompiledProcess, compileProcess } from "./compile.ts";

/** Where each image of the tree lives (or would live) and the user's fd overrides. */
export interface TreeCompileOptions {
  /** Absolute image path of a process. */
  pathOf: (pid: number) => string;
  /** Root pid of the tree (fd overrides apply to it). */
  rootPid: number;
  /** `--inherit-fd` overrides of the root. */
  inheritFds?: Map<number, string>;
}

/**
 * Compiles every process of a tree; throws one UnsupportedError naming
 * every resource of every process that cannot be restored.
 */
export function compileTree(
  images: readonly ProcessImage[],
  opts: TreeCompileOptions,
  refusals = new Refusals(),
): Map<number, CompiledProcess> {
  const sharedPipes = planSharedPipes([...images]);
  const unixSockets = planUnixSockets(
    images,
    Math.max(0, ...sharedPipes.map((s) => s.writeFd + 1)),
    refusals,
  );
  const out = new Map<number, CompiledProcess>();
  for (const image of images) {
    try {
      out.set(
        image.pid,
        compileProcess(image, {
          imagePath: opts.pathOf(image.pid),
          childImages: new Map(image.children.map((c) => [c, opts.pathOf(c)])),
          inheritFds: image.pid === opts.rootPid ? opts.inheritFds : undefined,
          sharedPipes,
          unixSockets,
        }),
      );
    } catch (e) {
      if (!(e instanceof UnsupportedError)) throw e;
      for (const item of e.items) refusals.add(`process ${image.pid} ${item}`);
    }
  }
  refusals.throwIfAny("the tree cannot be restored");
  return out;
}
