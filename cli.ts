/**
 * cryo's command-line entry point: `deno run -A cli.ts <command> ...`.
 * See `deno run -A cli.ts --help`. `--version` and `--help` are answered
 * by cli/fast.ts; the program (commander and the command that runs) is
 * loaded only for everything else.
 *
 * @module
 */

import { fastPath } from "./cli/fast.ts";

/**
 * The program module, named through a variable so that Deno does not load
 * its module graph (commander, the engine) before `--version` is answered;
 * `deno check` covers it through tests/cli_test.ts.
 */
const PROGRAM: string = "./cli/program.ts";

if (import.meta.main) {
  const code = fastPath(Deno.args) ??
    await import(PROGRAM).then((m: typeof import("./cli/program.ts")) => m.main(Deno.args));
  Deno.exit(code);
}
