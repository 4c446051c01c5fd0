/**
 * Where a process stands in its life, beyond running: zombie children
 * (zombies.ts), group stops and pending SIGSTOPs (stopped.ts); the states
 * refused while freezing are in refusals.ts, SIGTRAP at restore in
 * sigtrap.ts, interrupted syscalls in syscalls.ts.
 *
 * @module
 */

import type { ProcessImage } from "../model.ts";
import type { Refusals } from "../support.ts";
import type { FrozenTree } from "../dump/freeze.ts";
import { collectZombies } from "./zombies.ts";
import { collectGroupStop } from "./stopped.ts";

/**
 * The lifecycle fields of the image of frozen process `frozen` of `tree`
 * (zombie children, group stop), reporting their uses to `refusals`.
 */
export function collectLifecycle(
  frozen: FrozenTree["processes"][number],
  image: Omit<ProcessImage, "bootstrap">,
  tree: FrozenTree,
  refusals: Refusals,
): Pick<ProcessImage, "zombies" | "stopped"> {
  const out: Pick<ProcessImage, "zombies" | "stopped"> = {};
  if (frozen.zombies?.length) {
    const joinsGroupLater = image.pgid !== image.pid &&
      tree.processes.some((p) => p.pid === image.pgid);
    out.zombies = collectZombies(image, frozen.zombies, refusals, joinsGroupLater);
  }
  if (frozen.groupStop !== undefined) {
    const parentFrozen = tree.processes.some((p) => p.pid === image.ppid);
    out.stopped = collectGroupStop(image, frozen.groupStop, parentFrozen, refusals);
  }
  return out;
}
