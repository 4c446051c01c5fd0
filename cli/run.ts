/**
 * `cryo run <policy.ts>`: execute a checkpoint policy script.
 *
 * @module
 */

import type { Command } from "npm:@commander-js/extra-typings@15.1.0";
import { notAvailable } from "./errors.ts";

/** Registers `run` on the program. */
export function register(program: Command): void {
  program
    .command("run")
    .description("run a policy script: when and what to checkpoint, and what to do on failure")
    .argument("<policy>", "TypeScript module whose default export is definePolicy({...})")
    .addHelpText(
      "after",
      `
A policy names its target (a command to start, a pid or a pidfile), when to
checkpoint (interval, signal, on demand), where images go and how many to
keep, hooks around dump and restore, and whether to restore the target
from its latest image when it dies. Stop with Ctrl-C (SIGINT) or SIGTERM.

Example:
  cryo run scripts/policy-example.ts`,
    )
    .action((_policy) => {
      // The engine call goes here: runPolicy(policy, { signal }).
      notAvailable("run");
    });
}
