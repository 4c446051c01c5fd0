/**
 * cryo's command-line entry point: `deno run -A cli.ts <command> ...`.
 * See `deno run -A cli.ts --help`. `--version` and `--help` are answered
 * by cli/fast.ts; the program (commander and the command that runs) is
 * loaded only for everything else, for `dump` and `restore` from their
 * start-up bundle when it is up to date (cli/bundle.ts). Before the
 * bundle, a command loads this module and cli/bundle.ts alone.
 *
 * @module
 */

import { type BundledProgram, loadBundle } from "./cli/bundle.ts";

/**
 * The program module, named through a variable so that Deno does not load
 * its module graph (commander, the engine) before `--version` is answered;
 * `deno check` covers it through tests/cli_test.ts.
 */
const PROGRAM: string = "./cli/program.ts";

/** The fast path's module (cli/fast.ts), loaded only for the words it answers. */
const FAST: string = "./cli/fast.ts";

/** The command lines cli/fast.ts answers: one of these words alone. */
const FAST_WORDS: readonly string[] = ["--version", "-V", "--help", "-h"];

if (import.meta.main) {
  if (Deno.args.length === 1 && FAST_WORDS.includes(Deno.args[0])) {
    const { fastPath }: typeof import("./cli/fast.ts") = await import(FAST);
    const fast = fastPath(Deno.args);
    if (fast !== undefined) Deno.exit(fast);
  }
  const program: BundledProgram = await loadBundle(Deno.args) ?? await import(PROGRAM);
  Deno.exit(await program.main(Deno.args));
}
