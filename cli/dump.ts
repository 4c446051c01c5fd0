/**
 * `cryo dump <pid> --dir <dir>`: checkpoint a running process tree.
 *
 * @module
 */

import type { Command } from "npm:@commander-js/extra-typings@15.1.0";
import { notAvailable } from "./errors.ts";
import { positiveInt } from "./format.ts";

/** Registers `dump` on the program. */
export function register(program: Command): void {
  program
    .command("dump")
    .description("checkpoint a running process tree into an image directory")
    .argument("<pid>", "pid of the root process of the tree", positiveInt("pid"))
    .requiredOption("--dir <dir>", "image directory to write (created; must not exist)")
    .option("--leave-running", "let the tree continue after the dump (default: kill it)")
    .option("--json", "print the dump statistics as JSON")
    .addHelpText(
      "after",
      `
The tree (the process, its threads and its descendants) is frozen with
ptrace while it is saved. The directory gets manifest.json and one
<pid>.elf per process; "cryo show <dir>" describes it.

Examples:
  cryo dump 1234 --dir /var/lib/cryo/app-1
  cryo dump 1234 --dir /tmp/snap --leave-running --json`,
    )
    .action((_pid, _opts) => {
      // The engine call goes here: dump(pid, { dir, leaveRunning }), then present its stats.
      notAvailable("dump");
    });
}
