/**
 * `cryo dump <pid> --dir <dir>`: checkpoint a running process tree.
 *
 * @module
 */

import type { Command } from "npm:@commander-js/extra-typings@15.1.0";
import { checkpoint, type DumpEvent } from "../engine/dump/mod.ts";
import {
  humanBytes,
  humanDuration,
  humanRate,
  positiveInt,
  printJson,
  printLine,
} from "./format.ts";
import { Progress } from "./progress.ts";
import { optInsOf } from "./opt_ins.ts";

export { OPT_IN_FLAGS, optInsOf } from "./opt_ins.ts";

/** Registers `dump` on the program. */
export function register(program: Command): void {
  program
    .command("dump")
    .description("checkpoint a running process tree into an image directory")
    .argument("<pid>", "pid of the root process of the tree", positiveInt("pid"))
    .requiredOption("--dir <dir>", "image directory to write (created; must not exist)")
    .option("--leave-running", "let the tree continue after the dump (default: kill it)")
    .option("--json", "print the dump statistics as JSON")
    .option("--no-sync", "do not fsync the images (throw-away images: faster, not crash-safe)")
    .option("--precopy", "with --leave-running, always pre-copy (default: when it pays)")
    .option("--no-precopy", "with --leave-running, copy every page while frozen (no pre-copy)")
    .option(
      "--pre-dump",
      "copy memory while the tree runs and leave it running with dirty tracking armed",
    )
    .option("--parent <dir>", "the latest pre-dump of this tree: store only pages written since")
    .option("--ext-unix-sk", "allow unix sockets connected to a peer outside the tree")
    .option("--tcp-established", "save TCP connections to peers outside the tree (repair mode)")
    .option("--shell-job", "allow a job of a shell outside the tree (session, terminal)")
    .option(
      "--skip-in-flight",
      "leave out connections a listener has not accepted yet (their peers get a reset)",
    )
    .option(
      "--tcp-close",
      "save TCP connections as closed sockets (no repair mode, no lock; reads give 0 after restore)",
    )
    .option(
      "--no-network-lock",
      "with --tcp-established, do not drop the connections' segments until the restore",
    )
    .addHelpText(
      "after",
      `
The tree (the process, its threads and its descendants) is frozen with
ptrace while it is saved; with --leave-running its pages are first copied
while it runs (writes tracked with userfaultfd), then it is frozen to copy
the pages written meanwhile and resumes as soon as they are copied, before
the images are completed and fsync'd. The directory gets manifest.json and one
<pid>.elf per process; "cryo show <dir>" describes it.
State that depends on the world outside the tree is refused unless its
opt-in is given (the same flag is then needed at restore):

Pre-copy chains: --pre-dump saves the tree and leaves it running with its
writes tracked (a userfaultfd kept at a high fd in each process); a later
dump with --parent <that dir> stores only the pages written since and
references the rest there (restore follows the chain; "cryo image flatten"
merges it). Each --pre-dump --parent continues the chain; a dump without
--pre-dump ends it and removes the tracking. "cryo pre-dump --cancel <pid>"
removes the tracking of an abandoned chain.
--ext-unix-sk reconnects such a unix socket to its peer's address at
restore (a datagram socket stays unconnected if nothing is bound there).
With --tcp-established, the dump drops the incoming segments of those
connections from before it reads them (a BPF program on each network
device's ingress) until they are restored, or until the tree resumes
(--leave-running, a failed dump), so a peer sending meanwhile is not reset
but sends again; "cryo image unlock <dir>" lifts the lock of an image that
will not be restored, "cryo image unlock --stale" those of dumps whose cryo
was killed. With --tcp-close, TCP connections (established, half-closed, or
reset) are saved as closed sockets instead: no repair mode and no lock (the
peer sees the connection end when the tree is killed); the restore gives
each back shut down both ways (reads give 0, writes EPIPE).

Examples:
  cryo dump 1234 --dir /var/lib/cryo/app-1
  cryo dump 1234 --dir /tmp/snap --leave-running --json
  cryo dump 1234 --dir /tmp/d1 --pre-dump
  cryo dump 1234 --dir /tmp/d2 --parent /tmp/d1`,
    )
    .action((pid, opts) => run(pid, opts));
}

/** The options of `dump`, as commander (or cli/quick.ts) gives them. */
export interface DumpCliOptions {
  /** --dir */
  dir: string;
  /** --leave-running */
  leaveRunning?: boolean;
  /** --json */
  json?: boolean;
  /** false with --no-sync */
  sync: boolean;
  /** --precopy / --no-precopy */
  precopy?: boolean;
  /** --pre-dump */
  preDump?: boolean;
  /** --parent */
  parent?: string;
  /** --ext-unix-sk */
  extUnixSk?: boolean;
  /** --tcp-established */
  tcpEstablished?: boolean;
  /** --shell-job */
  shellJob?: boolean;
  /** --tcp-close */
  tcpClose?: boolean;
  /** --skip-in-flight */
  skipInFlight?: boolean;
  /** false with --no-network-lock */
  networkLock?: boolean;
}

/** Runs `dump` once its command line is parsed. */
export async function run(pid: number, opts: DumpCliOptions): Promise<void> {
  const progress = new Progress("dumping");
  const onEvent = (e: DumpEvent) => {
    if (e.type === "pages") progress.update(e.bytes, e.totalBytes);
  };
  let result;
  try {
    result = await checkpoint(pid, {
      dir: opts.dir,
      leaveRunning: opts.leaveRunning,
      onEvent,
      optIns: optInsOf(opts),
      sync: opts.sync,
      precopy: opts.precopy,
      preDump: opts.preDump,
      parent: opts.parent,
      networkLock: opts.networkLock,
      tcpClose: opts.tcpClose,
      skipInFlight: opts.skipInFlight,
    });
  } finally {
    progress.stop();
  }
  const s = result.stats;
  if (opts.json) {
    printJson({
      dir: result.dir,
      rootPid: pid,
      leftRunning: !!(opts.leaveRunning || opts.preDump),
      ...s,
      ...(result.networkLock ? { networkLock: result.networkLock } : {}),
      ...(result.inheritFdsNeeded ? { inheritFdsNeeded: result.inheritFdsNeeded } : {}),
    });
    return;
  }
  printLine(
    `dumped ${s.processes} process${s.processes === 1 ? "" : "es"}, ${s.threads} thread${
      s.threads === 1 ? "" : "s"
    }, ${s.mappings} mappings: ${humanBytes(s.pagesBytes)} of pages ` +
      `(image ${humanBytes(s.imageBytes)}${
        s.sharedBytes ? `, ${humanBytes(s.sharedBytes)} shared with parents stored once` : ""
      }) in ${humanDuration(s.dumpSeconds)}, ` +
      `${humanRate(s.pagesBytes, s.dumpSeconds)}, frozen ${humanDuration(s.freezeSeconds)}` +
      `${s.parentReusedBytes ? `, ${humanBytes(s.parentReusedBytes)} kept in the parent` : ""}` +
      ` -> ${result.dir}${
        opts.preDump
          ? " (left running, tracking armed)"
          : opts.leaveRunning
          ? " (left running)"
          : ""
      }`,
  );
  for (const fd of result.inheritFdsNeeded ?? []) {
    printLine(
      `fd ${fd} of ${pid} is a pipe to a process outside the tree: restore with --inherit-fd ` +
        `${fd}=PATH or ${fd}=fd:N`,
    );
  }
  const lock = result.networkLock;
  if (lock && "dir" in lock) {
    printLine(
      `${lock.connections} TCP connection${lock.connections === 1 ? "" : "s"} to peers outside ` +
        `the tree locked until the restore (${lock.dir})`,
    );
  } else if (lock) {
    console.error(
      `cryo: warning: TCP connections to peers outside the tree are not locked: ` +
        `${lock.skipped}; a segment a peer sends before the restore resets its connection`,
    );
  }
}
