/**
 * commander, loaded only when a command line needs it: `cryo dump` and
 * `cryo restore` with plain options are parsed by cli/quick.ts, and
 * commander (CommonJS, through Deno's Node compatibility layer: ~60 ms of
 * CPU at start-up) is imported for everything else (help, errors, the
 * other commands' options). The specifier is a variable so that neither
 * Deno's module graph nor a start-up bundle (cli/bundle.ts) holds it;
 * the types come from the type-only import.
 *
 * @module
 */

import type * as Commander from "npm:@commander-js/extra-typings@15.1.0";

/** The commander package, as `import * as Commander` gives it. */
export type CommanderLib = typeof Commander;

const SPEC: string = "npm:@commander-js/extra-typings@15.1.0";

let lib: CommanderLib | undefined;

/** Imports commander (once). */
export async function loadCommander(): Promise<CommanderLib> {
  lib ??= await import(SPEC) as CommanderLib;
  return lib;
}

/** commander, once {@link loadCommander} has loaded it (its argument parsers run after that). */
export function commander(): CommanderLib {
  if (!lib) throw new Error("internal error: commander is not loaded");
  return lib;
}
