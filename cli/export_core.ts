/**
 * `cryo export-core <dir> --pid <pid> --out <file>`: write a standard core
 * file of one process of an image.
 *
 * @module
 */

import type { Command } from "npm:@commander-js/extra-typings@15.1.0";
import { exportCoreFromDir } from "../engine/image/core.ts";
import { humanBytes, positiveInt } from "./format.ts";

/** Registers `export-core` on the program. */
export function register(program: Command): void {
  program
    .command("export-core")
    .description("write a core file (ELF ET_CORE) of one process of an image, for gdb")
    .argument("<dir>", "image directory written by cryo dump")
    .requiredOption("--pid <pid>", "which process of the image", positiveInt("pid"))
    .requiredOption("--out <file>", "core file to write")
    .addHelpText(
      "after",
      `
Examples:
  cryo export-core /var/lib/cryo/app-1 --pid 1234 --out app.core
  gdb /usr/bin/app app.core`,
    )
    .action(async (dir, opts) => {
      const s = await exportCoreFromDir(dir, opts.pid, opts.out);
      console.log(
        `wrote ${s.path}: ${s.loads} segments, ${humanBytes(s.savedBytes)} from the image, ` +
          `${humanBytes(s.fileBytes)} from mapped files`,
      );
      for (const f of s.unavailableFiles) {
        console.error(`cryo: note: ${f} is gone or changed; its pages are zero in the core`);
      }
    });
}
