/**
 * `cryo migrate`: live migration of a process tree to `cryo receive`
 * (engine/migrate/send.ts): pre-copy rounds while it runs, a short final
 * freeze, and the source killed once the receiver holds everything.
 *
 * @module
 */

import type { Command } from "npm:@commander-js/extra-typings@15.1.0";
import { migrate } from "../engine/migrate/send.ts";
import { readKeyFile } from "../engine/migrate/wire.ts";
import { CryoError } from "../engine/errors.ts";
import { humanBytes, humanDuration, positiveInt } from "./format.ts";
import { withInterrupt } from "./receive.ts";

/** Registers `migrate` on the program. */
export function register(program: Command): void {
  program
    .command("migrate")
    .description("move a running process tree to a cryo receive, with a short freeze")
    .argument("<pid>", "pid of the root process of the tree", positiveInt("pid"))
    .requiredOption("--to <host:port>", "where cryo receive listens")
    .requiredOption("--key-file <file>", "shared secret (mode 600, at least 16 bytes)")
    .option("--rounds <n>", "most pre-copy rounds (default 3)", positiveInt("--rounds"))
    .addHelpText(
      "after",
      `
Pre-dumps the tree while it runs and streams each round; stops when the
written memory stops shrinking (or after --rounds); then freezes the tree
for the last written pages, sends them, and once the receiver says all is
written and synced, kills the source. Any failure or interrupt before that
leaves the source running.

Examples:
  cryo migrate 1234 --to 10.0.0.2:7070 --key-file /etc/cryo/key`,
    )
    .action(async (pid, opts) => {
      const m = /^(.+):(\d+)$/.exec(opts.to);
      if (!m) throw new CryoError(`--to ${opts.to}: want host:port`);
      const key = await readKeyFile(opts.keyFile);
      const r = await withInterrupt((signal) =>
        migrate(pid, {
          host: m[1].replace(/^\[(.*)\]$/, "$1"),
          port: Number(m[2]),
          key,
          rounds: opts.rounds,
          signal,
          onEvent: (e) => {
            if (e.type === "round") {
              console.error(
                `cryo: round ${e.round}${e.final ? " (final)" : ""}: ${
                  humanBytes(e.bytes)
                } of pages, ` +
                  `${humanBytes(e.sentBytes)} sent in all`,
              );
            }
          },
        })
      );
      console.log(
        `migrated the tree of ${pid} in ${r.rounds} rounds (${humanBytes(r.sentBytes)}); ` +
          `frozen ${humanDuration(r.frozenSeconds)}`,
      );
    });
}
