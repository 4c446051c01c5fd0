/**
 * `cryo restore <dir>`: bring a checkpointed process tree back.
 *
 * @module
 */

import type { Command } from "npm:@commander-js/extra-typings@15.1.0";
import { notAvailable } from "./errors.ts";

/** Registers `restore` on the program. */
export function register(program: Command): void {
  program
    .command("restore")
    .description("restore the process tree saved in an image directory")
    .argument("<dir>", "image directory written by cryo dump")
    .option("--detach", "return once the tree runs, instead of waiting for it to exit")
    .option(
      "--inherit-fd <spec...>",
      "replace a restored fd instead of reopening it: <fd>=<path>, or <fd>=fd:<n> for cryo's own fd 0-2",
    )
    .option("--json", "print the restore result as JSON")
    .addHelpText(
      "after",
      `
The processes come back with their original pids (clone3 set_tid); a pid
that is in use makes the restore fail with the process that holds it.
Without --detach, cryo waits for the restored tree and reaps it.

Examples:
  cryo restore /var/lib/cryo/app-1
  cryo restore /tmp/snap --detach --inherit-fd 1=fd:1 2=/tmp/app.log`,
    )
    .action((_dir, _opts) => {
      // The engine call goes here: restore(dir, { detach, inheritFds }), then present the result.
      notAvailable("restore");
    });
}
