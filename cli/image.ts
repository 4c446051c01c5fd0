/**
 * `cryo image flatten <dir> --out <dir>`: merge a pre-copy chain into one
 * self-contained image; `cryo image unlock <dir>`: lift the network lock
 * of an image's TCP connections (engine/fds/tcp_lock.ts), `--stale` those
 * of dumps whose cryo died while dumping.
 *
 * @module
 */

import type { Command } from "npm:@commander-js/extra-typings@15.1.0";
import { flattenImage } from "../engine/image/chain.ts";
import { readManifestSync } from "../engine/image/manifest.ts";
import { LOCK_ROOT, staleLocks, unlockConnections } from "../engine/fds/tcp_lock.ts";

/** Registers `image` on the program. */
export function register(program: Command): void {
  const image = program
    .command("image")
    .description("merge a pre-copy chain into one image; lift an image's network lock");
  image
    .command("flatten")
    .description("write one self-contained image with the content of a chained image")
    .argument("<dir>", "image directory (with a parent)")
    .requiredOption("--out <dir>", "directory to create")
    .addHelpText(
      "after",
      `
Examples:
  cryo image flatten /tmp/d3 --out /tmp/full`,
    )
    .action(async (dir, opts) => {
      const m = await flattenImage(dir, opts.out);
      console.log(`flattened ${dir} -> ${opts.out} (${m.processes.length} process(es))`);
    });
  image
    .command("unlock")
    .description(
      "lift the network lock a dump left on the image's TCP connections (when it will not be restored)",
    )
    .argument("[dir]", "image directory")
    .option("--stale", "lift instead the locks of dumps whose cryo died while dumping")
    .addHelpText(
      "after",
      `
A cryo killed (SIGKILL) between taking its network lock and the end of its
dump leaves the lock in ${LOCK_ROOT}/cryo-tcp-lock-<dump id>, marked
dumping-<its pid>, and the tree running with its outside connections
dropping every segment: --stale lifts such locks.

Examples:
  cryo image unlock /tmp/ck
  cryo image unlock --stale`,
    )
    .action((dir, opts) => {
      if (opts.stale) {
        const ids = staleLocks();
        for (const id of ids) {
          unlockConnections(id);
          console.log(`lifted the network lock of dump ${id} (its cryo died while dumping)`);
        }
        if (!ids.length) console.log("no network lock left by a dump that died");
        return;
      }
      if (dir === undefined) program.error("error: give an image directory or --stale");
      const m = readManifestSync(dir);
      const lifted = m.dumpId !== undefined && unlockConnections(m.dumpId);
      console.log(lifted ? `lifted the network lock of ${dir}` : `${dir} has no network lock`);
    });
}
