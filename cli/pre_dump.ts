/**
 * `cryo pre-dump --cancel <pid>`: removes the dirty tracking an abandoned
 * pre-copy chain left in a running tree.
 *
 * @module
 */

import type { Command } from "npm:@commander-js/extra-typings@15.1.0";
import { cancelPreDump } from "../engine/dump/chain_dump.ts";
import { positiveInt } from "./format.ts";

/** Registers `pre-dump` on the program. */
export function register(program: Command): void {
  program
    .command("pre-dump")
    .description("remove the dirty tracking a pre-dump left in a running tree")
    .argument("<pid>", "pid of the root process of the tree", positiveInt("pid"))
    .requiredOption(
      "--cancel",
      "remove the tracking (the chain's images can no longer be continued)",
    )
    .addHelpText(
      "after",
      `
Examples:
  cryo pre-dump --cancel 1234`,
    )
    .action((pid) => {
      const n = cancelPreDump(pid);
      console.log(
        `removed the dirty tracking of the tree of ${pid} (${n} fd${n === 1 ? "" : "s"} closed)`,
      );
    });
}
