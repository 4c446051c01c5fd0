/**
 * Builds cryo's command-line program (commander) and runs it: every
 * command registers itself from its own module `cli/<command>.ts`, and
 * every error ends as one line on stderr with exit code 1 (2 for usage).
 *
 * @module
 */

import { Command, CommanderError } from "npm:@commander-js/extra-typings@15.1.0";
import { register as registerCheck } from "./check.ts";
import { register as registerDump } from "./dump.ts";
import { debugRequested, EXIT_USAGE, reportError } from "./errors.ts";
import { register as registerExportCore } from "./export_core.ts";
import { register as registerRestore } from "./restore.ts";
import { register as registerRun } from "./run.ts";
import { register as registerShow } from "./show.ts";
import { TOOL_VERSION } from "../engine/version.ts";

/** The command modules, in the order `--help` lists them. */
const COMMANDS: readonly ((program: Command) => void)[] = [
  registerCheck,
  registerDump,
  registerRestore,
  registerShow,
  registerExportCore,
  registerRun,
];

const FOOTER = `
Errors are reported as one line "cryo: <message>" on stderr; the exit code
is 1 when a command fails and 2 when the command line is wrong. --debug (or
CRYO_DEBUG=1) adds the stack trace.

Run "cryo check" first: it says what this host allows.`;

/**
 * Creates the `cryo` program with all commands registered. Commander never
 * exits the process itself: its errors are thrown (see {@link main}).
 */
export function buildProgram(): Command {
  const program = new Command();
  program
    .name("cryo")
    .description("Checkpoint running Linux processes into executable ELF images and restore them.")
    .version(TOOL_VERSION, "-V, --version", "print cryo's version")
    .option("--debug", "print stack traces with errors (also CRYO_DEBUG=1)")
    .helpCommand(false)
    .exitOverride()
    .configureOutput({ outputError: () => {} })
    .addHelpText("after", FOOTER);
  for (const register of COMMANDS) register(program);
  return program;
}

/**
 * Runs cryo with `argv` (without the program name) and returns the exit
 * code; prints errors as `cryo: <message>`.
 */
export async function main(argv: readonly string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync([...argv], { from: "user" });
    return Deno.exitCode; // set by commands that pass on a status (restore)
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.exitCode === 0) return 0; // --help, --version
      if (err.code === "commander.help") return EXIT_USAGE; // no command: help went to stderr
    }
    return reportError(err, debugRequested(argv));
  }
}
