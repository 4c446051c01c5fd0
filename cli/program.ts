/**
 * Builds cryo's command-line program (commander) and runs it: every
 * command registers itself from its own module `cli/<command>.ts`, loaded
 * with a dynamic `import()` only when that command runs (so `--version` and
 * `--help` load neither the engine nor the libraries the commands use), and
 * every error ends as one line on stderr with exit code 1 (2 for usage).
 *
 * @module
 */

import type { Command } from "npm:@commander-js/extra-typings@15.1.0";
import { debugRequested, EXIT_USAGE, isCommanderError, reportError } from "./errors.ts";
import { loadCommander } from "./commander_lib.ts";
import { quickParse } from "./quick.ts";
import { TOOL_VERSION } from "../engine/version.ts";
import { importModule } from "../engine/modules.ts";

/** One command: what the top-level `--help` shows of it, and how to load it. */
interface CommandEntry {
  /** Command name. */
  name: string;
  /** Its term in the top-level help, e.g. `dump [options] <pid>`. */
  term: string;
  /** Its one-line description (the same as the module's; tests/cli_test.ts checks). */
  summary: string;
  /** Loads the module that registers the command in full. */
  load: () => Promise<{ register(program: Command): void }>;
}

/**
 * Imports the command module `path` (relative to the repository, through
 * engine/modules.ts). The specifier is a variable on purpose: Deno reads,
 * parses and prepares the whole module graph behind every literal
 * `import("...")` of a module it loads, so literal specifiers here would make
 * every command pay for loading every other command's engine. `deno check`
 * covers these modules through tests/cli_test.ts, which imports them
 * statically.
 */
function loadCommand(path: string): Promise<{ register(program: Command): void }> {
  return importModule(path);
}

/** The commands, in the order `--help` lists them. */
export const COMMANDS: readonly CommandEntry[] = [
  {
    name: "check",
    term: "check [options]",
    summary: "probe this host for the kernel features and privileges cryo needs",
    load: () => loadCommand("cli/check.ts"),
  },
  {
    name: "dump",
    term: "dump [options] <pid>",
    summary: "checkpoint a running process tree into an image directory",
    load: () => loadCommand("cli/dump.ts"),
  },
  {
    name: "restore",
    term: "restore [options] <dir>",
    summary: "restore the process tree saved in an image directory",
    load: () => loadCommand("cli/restore.ts"),
  },
  {
    name: "launch",
    term: "launch [options] <cmd...>",
    summary: "start a command as pid 1 of a new pid namespace, ready to checkpoint",
    load: () => loadCommand("cli/launch.ts"),
  },
  {
    name: "show",
    term: "show [options] <image>",
    summary: "describe a checkpoint image: processes, threads, mappings, fds",
    load: () => loadCommand("cli/show.ts"),
  },
  {
    name: "pre-dump",
    term: "pre-dump [options] <pid>",
    summary: "remove the dirty tracking a pre-dump left in a running tree",
    load: () => loadCommand("cli/pre_dump.ts"),
  },
  {
    name: "image",
    term: "image flatten|unlock <dir>",
    summary: "merge a pre-copy chain into one image; lift an image's network lock",
    load: () => loadCommand("cli/image.ts"),
  },
  {
    name: "migrate",
    term: "migrate [options] <pid>",
    summary: "move a running process tree to a cryo receive, with a short freeze",
    load: () => loadCommand("cli/migrate.ts"),
  },
  {
    name: "receive",
    term: "receive [options]",
    summary: "receive a process tree sent by cryo migrate, and restore it",
    load: () => loadCommand("cli/receive.ts"),
  },
  {
    name: "export-core",
    term: "export-core [options] <dir>",
    summary: "write a core file (ELF ET_CORE) of one process of an image, for gdb",
    load: () => loadCommand("cli/export_core.ts"),
  },
  {
    name: "run",
    term: "run [options] <policy>",
    summary: "run a policy script: when and what to checkpoint, and what to do on failure",
    load: () => loadCommand("cli/run.ts"),
  },
];

const FOOTER = `
Errors are reported as one line "cryo: <message>" on stderr; the exit code
is 1 when a command fails and 2 when the command line is wrong. --debug (or
CRYO_DEBUG=1) adds the stack trace.

Run "cryo check" first: it says what this host allows.`;

/** The command `argv` names: its first word that is not an option (global options take no value). */
function commandNamed(argv: readonly string[]): CommandEntry | undefined {
  const word = argv.find((a) => !a.startsWith("-"));
  return COMMANDS.find((c) => c.name === word);
}

/**
 * Creates the `cryo` program. The commands in `load` (by name; all of them
 * when omitted) are registered in full from their modules; the others only
 * by name and summary, enough for the top-level help and for commander's
 * "did you mean" on a mistyped command. Commander never exits the process
 * itself: its errors are thrown (see {@link main}).
 */
export async function buildProgram(
  load: readonly string[] = COMMANDS.map((c) => c.name),
): Promise<Command> {
  const { Command } = await loadCommander();
  const program = new Command();
  program
    .name("cryo")
    .description("Checkpoint running Linux processes into executable ELF images and restore them.")
    .version(TOOL_VERSION, "-V, --version", "print cryo's version")
    .option("--debug", "print stack traces with errors (also CRYO_DEBUG=1)")
    .helpCommand(false)
    .exitOverride()
    .configureOutput({ outputError: () => {} })
    .configureHelp({
      subcommandTerm: (cmd) => COMMANDS.find((c) => c.name === cmd.name())?.term ?? cmd.name(),
    })
    .addHelpText("after", FOOTER);
  const modules = await Promise.all(
    COMMANDS.map((c) => load.includes(c.name) ? c.load() : undefined),
  );
  COMMANDS.forEach((c, i) => {
    const mod = modules[i];
    if (mod) mod.register(program);
    else program.command(c.name).description(c.summary);
  });
  return program;
}

/** A command module that cli/quick.ts can run without commander. */
interface QuickModule {
  run(argument: unknown, opts: unknown): Promise<void>;
}

/**
 * Runs cryo with `argv` (without the program name) and returns the exit
 * code; prints errors as `cryo: <message>`. Only the module of the command
 * that runs is loaded; a plain `dump` or `restore` command line is parsed
 * by cli/quick.ts, and commander is loaded for everything else.
 */
export async function main(argv: readonly string[]): Promise<number> {
  try {
    const quick = quickParse(argv);
    if (quick) {
      const mod = await importModule<QuickModule>(quick.module);
      await mod.run(quick.argument, quick.opts);
      return Deno.exitCode;
    }
    const entry = commandNamed(argv);
    const program = await buildProgram(entry ? [entry.name] : []);
    await program.parseAsync([...argv], { from: "user" });
    return Deno.exitCode; // set by commands that pass on a status (restore)
  } catch (err) {
    if (isCommanderError(err)) {
      if (err.exitCode === 0) return 0; // --help, --version
      if (err.code === "commander.help") return EXIT_USAGE; // no command: help went to stderr
    }
    return reportError(err, debugRequested(argv));
  }
}
