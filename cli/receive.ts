/**
 * `cryo receive`: the receiving end of `cryo migrate` (engine/migrate/receive.ts):
 * listens (loopback unless told otherwise), accepts one authenticated
 * sender, writes its image, then restores it (detached, like
 * `restore --detach`; optionally lazily, the rounds then merged into one
 * image while the tree runs: engine/migrate/stream_flatten.ts).
 *
 * @module
 */

import type { Command } from "npm:@commander-js/extra-typings@15.1.0";
import { type PendingImage, receive } from "../engine/migrate/receive.ts";
import { readKeyFile } from "../engine/migrate/wire.ts";
import { restore, type RestoredTree, type RestoreOptions } from "../engine/restore/mod.ts";
import { CryoError } from "../engine/errors.ts";
import { humanBytes } from "./format.ts";

/** `[addr:]port` → address and port (address 127.0.0.1 when omitted). */
export function parseListen(text: string): { hostname: string; port: number } {
  const m = /^(?:(.+):)?(\d+)$/.exec(text);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new CryoError(`--listen ${text}: want [address:]port`);
  return { hostname: (m[1] ?? "127.0.0.1").replace(/^\[(.*)\]$/, "$1"), port };
}

/** Runs `fn` with an AbortSignal fired by SIGINT or SIGTERM. */
export async function withInterrupt<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  const abort = () => ac.abort();
  Deno.addSignalListener("SIGINT", abort);
  Deno.addSignalListener("SIGTERM", abort);
  try {
    return await fn(ac.signal);
  } finally {
    Deno.removeSignalListener("SIGINT", abort);
    Deno.removeSignalListener("SIGTERM", abort);
  }
}

/**
 * Whether a restore failed only because a pid it needs is still held: by a
 * live task (the source still exiting), as a group or session id, or by a
 * zombie its parent has not reaped yet (the source killed by the sender,
 * same-host migration: its parent reaps it when it next looks).
 */
export function pidStillHeld(message: string): boolean {
  return / in use/.test(message) || / held by a zombie /.test(message);
}

/** Restores `dir`, waiting up to 30 s while a pid it needs is still held (same-host migration). */
async function restoreWhenFree(
  dir: string,
  lazy: boolean,
  pending: PendingImage | undefined,
  accept: Pick<RestoreOptions, "allowClockBackwards" | "newAuditSession">,
): Promise<RestoredTree> {
  const until = Date.now() + 30_000;
  for (;;) {
    try {
      return await restore(
        dir,
        pending
          ? { lazy, verifyChecksums: false, lazyEnsure: pending.ensure, ...accept }
          : { lazy, ...accept },
      );
    } catch (e) {
      if (!pidStillHeld((e as Error).message) || Date.now() > until) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** Registers `receive` on the program. */
export function register(program: Command): void {
  program
    .command("receive")
    .description("receive a process tree sent by cryo migrate, and restore it")
    .requiredOption("--listen <[addr:]port>", "where to listen (address 127.0.0.1 unless given)")
    .requiredOption("--dir <dir>", "image directory to write (must not exist)")
    .requiredOption("--key-file <file>", "shared secret (mode 600, at least 16 bytes)")
    .option("--lazy", "restore lazily: the tree runs before its memory is in")
    .option("--no-restore", "only write the image directory")
    .option(
      "--allow-clock-backwards",
      "restore even where CLOCK_MONOTONIC/BOOTTIME is behind the sender's",
    )
    .option(
      "--new-audit-session",
      "give back a login uid other than the receiver's, with a new audit session id",
    )
    .addHelpText(
      "after",
      `
Accepts one sender that proves the shared secret (HMAC-SHA256 challenge-
response both ways); every frame it sends is authenticated before it is
written. The rounds are kept in a private directory next to --dir; --dir
appears only once the final round is complete. The restored tree is left
running (as with restore --detach); its root pid is printed.

With --lazy the tree runs again as soon as the final round is in: the
rounds are merged into one image while it runs (each page merged before it
is served), and cryo receive exits once every page is in and --dir is
complete. If it dies before that, the tree is killed and the received
rounds stay in .<dir>.migrate-<pid>/ (cryo restore .../r<last> restores them).

Examples:
  cryo receive --listen 7070 --dir /var/lib/cryo/in --key-file /etc/cryo/key
  cryo receive --listen 10.0.0.2:7070 --dir /tmp/in --key-file key --lazy`,
    )
    .action(async (opts) => {
      const { hostname, port } = parseListen(opts.listen);
      const key = await readKeyFile(opts.keyFile);
      const got = await withInterrupt((signal) =>
        receive(hostname, port, {
          dir: opts.dir,
          key,
          signal,
          deferMerge: !!opts.lazy && opts.restore,
          ...(opts.restore ? { clockCheck: opts.allowClockBackwards ? "allow" : "check" } : {}),
          onEvent: (e) => {
            if (e.type === "listening") {
              const loop = /^(127\.|::1$|localhost$)/.test(e.hostname);
              console.error(
                `cryo: listening on ${e.hostname}:${e.port}` +
                  (loop ? " (loopback only; --listen <addr>:<port> to accept other hosts)" : ""),
              );
            } else if (e.type === "authenticated") {
              console.error(`cryo: sender ${e.peer} authenticated`);
            }
          },
        })
      );
      console.error(
        `cryo: received ${got.rounds} round${got.rounds === 1 ? "" : "s"} ` +
          `(${humanBytes(got.bytes)}) into ${got.dir}`,
      );
      if (!opts.restore) return;
      const accept = {
        allowClockBackwards: !!opts.allowClockBackwards,
        newAuditSession: !!opts.newAuditSession,
      };
      const pending = got.pending;
      if (!pending) {
        const tree = await restoreWhenFree(got.dir, !!opts.lazy, undefined, accept);
        if (tree.lazy) tree.lazy.handOff();
        console.log(tree.rootPid);
        return;
      }
      // --lazy: restored from the chain as received; the merge into one image goes on
      // while the lazy server serves (each page copied in before it is served).
      let tree: RestoredTree;
      try {
        tree = await restoreWhenFree(pending.dir, true, pending, accept);
      } catch (e) {
        await pending.complete();
        throw new CryoError(`${(e as Error).message} (the image is kept in ${got.dir})`);
      }
      console.log(tree.rootPid);
      tree.lazy?.serve();
      const late = await pending.complete();
      console.error(
        `cryo: restored before the image was merged; ${humanBytes(late)} merged while it ran, ` +
          `the image is complete in ${got.dir}`,
      );
      if (tree.lazy?.failure) {
        throw new CryoError(
          `the restored tree was killed: ${tree.lazy.failure} (the image is kept in ${got.dir})`,
        );
      }
    });
}
