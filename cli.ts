/**
 * cryo's command-line entry point: `deno run -A cli.ts <command> ...`.
 * See `deno run -A cli.ts --help`. `--version` and `--help` are answered
 * by cli/fast.ts; the program (commander and the command that runs) is
 * loaded only for everything else, for `dump` and `restore` from their
 * start-up bundle when it is up to date (cli/bundle.ts).
 *
 * @module
 */

import { fastPath } from "./cli/fast.ts";
import { type BundledProgram, loadBundle } from "./cli/bundle.ts";

/**
 * The program module, named through a variable so that Deno does not load
 * its module graph (commander, the engine) before `--version` is answered;
 * `deno check` covers it through tests/cli_test.ts.
 */
const PROGRAM: string = "./cli/program.ts";

if (import.meta.main) {
  const fast = fastPath(Deno.args);
  if (fast !== undefined) Deno.exit(fast);
  const program: BundledProgram = await loadBundle(Deno.args) ?? await import(PROGRAM);
  Deno.exit(await program.main(Deno.args));
}
