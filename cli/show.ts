/**
 * `cryo show <dir|file.elf>`: describe an image without restoring it.
 *
 * @module
 */

import type { Command } from "npm:@commander-js/extra-typings@15.1.0";
import { notAvailable } from "./errors.ts";

/** Registers `show` on the program. */
export function register(program: Command): void {
  program
    .command("show")
    .description("describe a checkpoint image: processes, threads, mappings, fds")
    .argument("<image>", "image directory, or one process's .elf file")
    .option("--json", "print the typed model (the same as readImage()) as JSON")
    .option("--plan", "print the restore program, one syscall per line like strace")
    .addHelpText(
      "after",
      `
Examples:
  cryo show /var/lib/cryo/app-1
  cryo show /var/lib/cryo/app-1/1234.elf --plan
  cryo show /var/lib/cryo/app-1 --json`,
    )
    .action((_image, _opts) => {
      // The engine call goes here: readImage(image), then present it (or its plan).
      notAvailable("show");
    });
}
