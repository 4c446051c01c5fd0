/**
 * The start-up fast path of the CLI: `cryo --version` and `cryo --help`
 * (alone) are answered from constants, without loading commander, the
 * engine or any library; everything else goes to cli/program.ts.
 * tests/cli_test.ts checks that {@link TOP_HELP} is what commander prints.
 *
 * @module
 */

import { TOOL_VERSION } from "../engine/version.ts";

/** The top-level help exactly as commander renders it for cli/program.ts (80 columns). */
export const TOP_HELP = `Usage: cryo [options] [command]

Checkpoint running Linux processes into executable ELF images and restore them.

Options:
  -V, --version                print cryo's version
  --debug                      print stack traces with errors (also
                               CRYO_DEBUG=1)
  -h, --help                   display help for command

Commands:
  check [options]              probe this host for the kernel features and
                               privileges cryo needs
  dump [options] <pid>         checkpoint a running process tree into an image
                               directory
  restore [options] <dir>      restore the process tree saved in an image
                               directory
  launch [options] <cmd...>    start a command as pid 1 of a new pid namespace,
                               ready to checkpoint
  show [options] <image>       describe a checkpoint image: processes, threads,
                               mappings, fds
  pre-dump [options] <pid>     remove the dirty tracking a pre-dump left in a
                               running tree
  image flatten|unlock <dir>   merge a pre-copy chain into one image; lift an
                               image's network lock
  migrate [options] <pid>      move a running process tree to a cryo receive,
                               with a short freeze
  receive [options]            receive a process tree sent by cryo migrate, and
                               restore it
  export-core [options] <dir>  write a core file (ELF ET_CORE) of one process of
                               an image, for gdb
  run [options] <policy>       run a policy script: when and what to checkpoint,
                               and what to do on failure

Errors are reported as one line "cryo: <message>" on stderr; the exit code
is 1 when a command fails and 2 when the command line is wrong. --debug (or
CRYO_DEBUG=1) adds the stack trace.

Run "cryo check" first: it says what this host allows.
`;

/**
 * Answers `argv` when it is exactly `--version`/`-V` or `--help`/`-h`
 * (printing to stdout) and returns the exit code; `undefined` for anything
 * else (the full program handles it).
 */
export function fastPath(argv: readonly string[]): number | undefined {
  if (argv.length !== 1) return undefined;
  const text = argv[0] === "--version" || argv[0] === "-V"
    ? `${TOOL_VERSION}\n`
    : argv[0] === "--help" || argv[0] === "-h"
    ? TOP_HELP
    : undefined;
  if (text === undefined) return undefined;
  Deno.stdout.writeSync(new TextEncoder().encode(text));
  return 0;
}
