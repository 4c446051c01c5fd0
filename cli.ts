/**
 * cryo's command-line entry point: `deno run -A cli.ts <command> ...`.
 * See `deno run -A cli.ts --help`.
 *
 * @module
 */

import { main } from "./cli/program.ts";

if (import.meta.main) Deno.exit(await main(Deno.args));
