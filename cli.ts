/**
 * cryo's command-line entry point: `deno run -A cli.ts <command> ...`.
 * See `deno run -A cli.ts --help`. `--version` and `--help` are answered
 * by cli/fast.ts; the program (commander and the command that runs) is
 * loaded only for everything else.
 *
 * @module
 */

import { fastPath } from "./cli/fast.ts";

if (import.meta.main) {
  const code = fastPath(Deno.args) ??
    await import("./cli/program.ts").then(({ main }) => main(Deno.args));
  Deno.exit(code);
}
