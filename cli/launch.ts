/**
 * `cryo launch [--pid-file F] [--detach] -- CMD ARGS...`: start a command
 * as pid 1 of a new pid namespace (engine/pidns/).
 *
 * @module
 */

import type { Command } from "npm:@commander-js/extra-typings@15.1.0";
import { launch } from "../engine/pidns/mod.ts";
import { waitForwardingSignals } from "./wait_tree.ts";

/** Registers `launch` on the program. */
export function register(program: Command): void {
  program
    .command("launch")
    .description("start a command as pid 1 of a new pid namespace, ready to checkpoint")
    .argument("<cmd...>", "the command and its arguments (after --)")
    .option("--pid-file <file>", "write the command's pid (as the host sees it) to this file")
    .option("--detach", "return at once instead of waiting for the command to exit")
    .option("--uts", "give it a UTS namespace of its own (host and domain name)")
    .option("--hostname <name>", "its host name (implies --uts)")
    .option("--ipc", "give it an IPC namespace of its own (System V IPC, POSIX queues)")
    .addHelpText(
      "after",
      `
The command runs as pid 1 of a new pid namespace, in a new mount namespace
whose /proc is its own, so its pids are private: "cryo dump <pid>" of it
records the pids it sees, and "cryo restore" brings it back with the same
pids inside a fresh namespace, whatever pids the host uses (so one image
can run many times at once). cryo is not part of the tree: the command is
its init (it should reap the orphans of its tree, and gets only the
signals it handles, SIGKILL aside). cryo prints the command's host pid;
without --detach it forwards SIGINT, SIGTERM and SIGHUP to it and exits
with its status. With --uts/--hostname and --ipc it also gets a UTS and
an IPC namespace of its own; these, and tmpfs file systems it mounts, are
saved and re-created by dump and restore.

Examples:
  cryo launch --detach --pid-file /run/app.pid -- /usr/bin/app --serve
  cryo launch -- sh -c 'sleep 100 & wait'`,
    )
    .action(async (cmd, opts) => {
      const tree = launch(cmd[0], cmd.slice(1), {
        uts: !!opts.uts,
        ipc: !!opts.ipc,
        ...(opts.hostname !== undefined ? { hostname: opts.hostname } : {}),
      });
      if (opts.pidFile) Deno.writeTextFileSync(opts.pidFile, `${tree.pid}\n`);
      console.log(tree.pid);
      if (opts.detach) return;
      await waitForwardingSignals(tree.exited, (sig) => Deno.kill(tree.pid, sig));
    });
}
