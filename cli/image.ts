/**
 * `cryo image flatten <dir> --out <dir>`: merge a pre-copy chain into one
 * self-contained image.
 *
 * @module
 */

import type { Command } from "npm:@commander-js/extra-typings@15.1.0";
import { flattenImage } from "../engine/image/chain.ts";

/** Registers `image` on the program. */
export function register(program: Command): void {
  const image = program
    .command("image")
    .description("merge a pre-copy chain of images into one self-contained image");
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
}
