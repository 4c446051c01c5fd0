/**
 * `cryo restore <dir>`: bring a checkpointed process tree back.
 *
 * @module
 */

import type { Command } from "npm:@commander-js/extra-typings@15.1.0";
import { restore } from "../engine/restore/mod.ts";
import { humanDuration, printJson, toJson } from "./format.ts";
import { optInsOf } from "./opt_ins.ts";
import { waitForwardingSignals } from "./wait_tree.ts";
import type { LazyServer } from "../engine/memory/lazy_serve.ts";
import { commander } from "./commander_lib.ts";

/** Serves a lazy restore's pages in steps, letting signals and exits be handled between them. */
async function serveLazy(server: LazyServer): Promise<void> {
  while (!server.step(20)) await new Promise((r) => setTimeout(r, 0));
  if (server.failure) {
    console.error(`cryo: lazy restore failed, the tree was killed: ${server.failure}`);
    Deno.exitCode = 1;
  }
}

/** Parses `--inherit-fd` specs (`<fd>=<path>` or `<fd>=fd:<n>`) into a map. */
export function parseInheritFds(specs: readonly string[] = []): Map<number, string> {
  const out = new Map<number, string>();
  for (const spec of specs) {
    const m = spec.match(/^(\d+)=(.+)$/);
    if (!m) {
      throw new (commander().InvalidArgumentError)(
        `--inherit-fd ${spec}: expected <fd>=<path> or <fd>=fd:<n>`,
      );
    }
    if (m[2].startsWith("fd:") && !/^fd:[0-2]$/.test(m[2])) {
      throw new (commander().InvalidArgumentError)(
        `--inherit-fd ${spec}: only cryo's fds 0, 1 and 2 can be passed`,
      );
    }
    out.set(Number(m[1]), m[2]);
  }
  return out;
}

/**
 * Writes one line on stdout: the restored pid or summary of `--detach`,
 * right before cryo exits. Not by `console.log`, whose first call is ~1 ms
 * of cold code on the command's wall (docs/PERFORMANCE.md, eighth pass,
 * smallrestore2).
 */
function writeLine(text: string): void {
  const bytes = new TextEncoder().encode(text + "\n");
  for (let at = 0; at < bytes.length;) at += Deno.stdout.writeSync(bytes.subarray(at));
}

const SIGNAL_NUMBERS: Record<string, number> = { SIGINT: 2, SIGTERM: 15, SIGHUP: 1 };

/** Registers `restore` on the program. */
export function register(program: Command): void {
  program
    .command("restore")
    .description("restore the process tree saved in an image directory")
    .argument("<dir>", "image directory written by cryo dump")
    .option("--detach", "return once the tree runs, instead of waiting for it to exit")
    .option(
      "--inherit-fd <spec...>",
      "replace a restored fd instead of reopening it: <fd>=<path>, or <fd>=fd:<n> for cryo's own fd 0-2",
    )
    .option(
      "--new-pid-ns",
      "restore into a fresh pid namespace (same pids inside, any pids on the host)",
    )
    .option("--no-verify", "skip the checksum (CRC-32) check of the images")
    .option(
      "--trust-image-owner",
      "restore (as root) an image directory owned or writable by another user",
    )
    .option(
      "--lazy",
      "run the tree before its memory is in; cryo serves the pages (docs/ARCHITECTURE.md)",
    )
    .option("--json", "print the restore result as JSON")
    .option("--ext-unix-sk", "the image has unix sockets connected outside the tree")
    .option("--tcp-established", "restore TCP connections to peers outside the tree")
    .option("--shell-job", "the image is a job of a shell outside the tree")
    .option(
      "--tcp-close",
      "restore the image's TCP connections as closed sockets (instead of --tcp-established)",
    )
    .option(
      "--allow-clock-backwards",
      "restore even where CLOCK_MONOTONIC/BOOTTIME is behind the image's (another boot or host)",
    )
    .option(
      "--new-audit-session",
      "give back a login uid other than the restorer's, with a new audit session id",
    )
    .addHelpText(
      "after",
      `
The processes come back with their original pids (clone3 set_tid); a pid
that is in use makes the restore fail with the process that holds it.
Without --detach, cryo stays the restored root's parent, forwards SIGINT,
SIGTERM and SIGHUP to it, and exits with its exit status.
A tree dumped from "cryo launch" comes back in a fresh pid namespace (as
pid 1 there, the same pids inside), whatever pids the host uses; with
--new-pid-ns any tree does (under a small init cryo provides, which reaps
orphans and exits with the root's status): the program sees its own pids
unchanged, only the host sees others. The pid printed is the host's.
With --lazy the tree runs before its private anonymous memory is in: cryo
serves those pages from the image as they are touched and copies the rest
in the background (with --detach a background process does); if cryo dies
first, a watchdog kills the tree (docs/ARCHITECTURE.md, "Lazy restore").
Fds that led to a terminal, or to a pipe or socket outside the tree, are
re-attached to cryo's own stdin/stdout/stderr ("cryo show" says which).
An image dumped on another boot or host whose monotonic clock was ahead of
this host's is refused: the tree would see its clocks go back
(--allow-clock-backwards restores it anyway).
A tree dumped from another login session (pam_loginuid's login uid and
audit session id) than the restorer's is refused: the kernel gives a new
session id to a process that sets its login uid. --new-audit-session
restores it with its login uid and a new session id. An unset login uid
is given back exactly.
With --tcp-close, the image's TCP connections (dumped with --tcp-established)
come back as closed sockets shut down both ways: reads give 0, writes EPIPE;
the dump's network lock is lifted, so their peers get a reset on their next
segment.

Examples:
  cryo restore /var/lib/cryo/app-1
  cryo restore /tmp/snap --detach --inherit-fd 1=fd:1 2=/tmp/app.log`,
    )
    .action((dir, opts) => run(dir, opts));
}

/** The options of `restore`, as commander (or cli/quick.ts) gives them. */
export interface RestoreCliOptions {
  /** --detach */
  detach?: boolean;
  /** --inherit-fd specs */
  inheritFd?: string[];
  /** --new-pid-ns */
  newPidNs?: boolean;
  /** false with --no-verify */
  verify: boolean;
  /** --trust-image-owner */
  trustImageOwner?: boolean;
  /** --lazy */
  lazy?: boolean;
  /** --json */
  json?: boolean;
  /** --ext-unix-sk */
  extUnixSk?: boolean;
  /** --tcp-established */
  tcpEstablished?: boolean;
  /** --shell-job */
  shellJob?: boolean;
  /** --tcp-close */
  tcpClose?: boolean;
  /** --allow-clock-backwards */
  allowClockBackwards?: boolean;
  /** --new-audit-session */
  newAuditSession?: boolean;
}

/** Runs `restore` once its command line is parsed. */
export async function run(dir: string, opts: RestoreCliOptions): Promise<void> {
  const tree = await restore(dir, {
    inheritFds: parseInheritFds(opts.inheritFd ?? []),
    verifyChecksums: opts.verify,
    trustImageOwner: opts.trustImageOwner,
    allowClockBackwards: opts.allowClockBackwards,
    newAuditSession: opts.newAuditSession,
    optIns: optInsOf(opts),
    newPidNs: opts.newPidNs,
    lazy: opts.lazy,
    tcpClose: opts.tcpClose,
  });
  // --lazy: cryo serves the pages until all are in; with --detach a background process does.
  if (tree.lazy && opts.detach) tree.lazy.handOff();
  const serving = tree.lazy && !opts.detach ? serveLazy(tree.lazy) : Promise.resolve();
  const summary = {
    rootPid: tree.rootPid,
    pids: tree.pids,
    seconds: tree.seconds,
    detached: !!opts.detach,
  };
  if (opts.detach) {
    writeLine(opts.json ? toJson(summary) : String(tree.rootPid));
    return;
  }
  const announce = () => {
    if (opts.json) printJson(summary);
    else {
      console.error(
        `cryo: restored ${tree.pids.length} process${tree.pids.length === 1 ? "" : "es"} ` +
          `(root pid ${tree.rootPid}) in ${humanDuration(tree.seconds)}; waiting for it to exit`,
      );
    }
  };
  await waitForwardingSignals(tree.exited, (sig) => tree.kill(SIGNAL_NUMBERS[sig]), announce);
  await serving;
}
