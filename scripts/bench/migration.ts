/**
 * The live migration part of the near-zero downtime bench
 * (scripts/bench/nearzero.ts): the writer (scripts/bench/dirtier.c) is
 * migrated over loopback, sender and receiver both through the engine API
 * in this process (engine/migrate/send.ts, receive.ts; an ephemeral port,
 * a random key), then restored as `cryo receive` does: eager from the
 * merged image (checksums verified), or with `--lazy` from the chain as
 * received while it is merged (`deferMerge`, engine/migrate/stream_flatten.ts),
 * served to the end.
 *
 * - total: from calling migrate() to the restored writer's first heartbeat;
 * - downtime: the writer's own heartbeat gap, from its last beat before
 *   the final freeze to its first beat as the restored copy; of it, until
 *   the final round is in at the receiver (written and synced: its round
 *   directory appeared), until the switch (migrate() returned: the
 *   receiver's chain flattened, the source killed) and the restore (from
 *   calling restore() to the first beat);
 * - the sender's rounds, bytes sent and final freeze; the writer's own
 *   memory check afterwards (the restored writer runs on).
 *
 * @module
 */

import { basename, dirname } from "node:path";
import { migrate } from "../../engine/migrate/send.ts";
import { receive } from "../../engine/migrate/receive.ts";
import { epochMs, waitPidFree } from "./procs.ts";
import type { RunningWorkload } from "./workloads.ts";
import type { MigrationRun } from "./nearzero_report.ts";
import { timedRestore } from "./restore_timing.ts";

let serial = 0;

/**
 * Notes when each round directory of the receiver appears (`r<k>` in its
 * private `.<name>.migrate-<pid>` directory, engine/migrate/receive.ts:
 * renamed there once the round is complete and synced), polling every 5 ms.
 * The bench's own observation; nothing is changed.
 */
function watchRounds(dir: string): { stop(): void; lastMs(): number | null } {
  const partial = `${dirname(dir)}/.${basename(dir)}.migrate-${Deno.pid}`;
  const seen = new Map<string, number>();
  const id = setInterval(() => {
    try {
      for (const e of Deno.readDirSync(partial)) {
        if (/^r\d+$/.test(e.name) && !seen.has(e.name)) seen.set(e.name, epochMs());
      }
    } catch { /* not there (yet, or any more) */ }
  }, 5);
  return {
    stop: () => clearInterval(id),
    lastMs: () => seen.size ? Math.max(...seen.values()) : null,
  };
}

/** Migrates `w` to a receiver in this process and restores it there (`lazy` or eagerly). */
export async function measureMigration(
  w: RunningWorkload,
  mib: number,
  lazy: boolean,
  work: string,
  rounds = 3,
): Promise<MigrationRun> {
  const dir = `${work}/migrated-${++serial}`;
  const key = crypto.getRandomValues(new Uint8Array(32));
  const ac = new AbortController();
  let listening: (port: number) => void = () => {};
  const port = new Promise<number>((r) => listening = r);
  const rx = receive("127.0.0.1", 0, {
    dir,
    key,
    signal: ac.signal,
    deferMerge: lazy, // as `cryo receive --lazy`: the chain merged while the tree runs
    onEvent: (e) => {
      if (e.type === "listening") listening(e.port);
    },
  });
  rx.catch(() => {}); // awaited below; a failure before that is reported there
  try {
    const p = await Promise.race([port, rx.then(() => -1)]);
    if (p < 0) throw new Error("the receiver returned before listening");
    const startMs = epochMs();
    const watch = watchRounds(dir);
    let sent;
    try {
      sent = await migrate(w.child.pid, { host: "127.0.0.1", port: p, key, rounds });
    } catch (e) {
      ac.abort();
      throw e;
    } finally {
      watch.stop();
    }
    const switchedMs = epochMs();
    const finalRoundMs = watch.lastMs();
    const got = await rx;
    // The sender killed the source (our child): reap it, the restore needs its pid.
    await waitPidFree(w.child.pid);
    const pending = got.pending;
    const t = pending
      ? await timedRestore(w, pending.dir, {
        lazy: true,
        verifyChecksums: false,
        lazyEnsure: pending.ensure,
      }).finally(() => pending.complete())
      : await timedRestore(w, dir, { lazy, verifyChecksums: true });
    return {
      mib,
      restore: lazy ? "lazy" : "eager",
      totalMs: t.gap.toMs - startMs,
      downtimeMs: t.gap.toMs - t.gap.fromMs,
      untilFinalRoundMs: finalRoundMs === null ? null : finalRoundMs - t.gap.fromMs,
      untilSwitchMs: switchedMs - t.gap.fromMs,
      restoreMs: t.gap.toMs - t.startMs,
      frozenSeconds: sent.frozenSeconds,
      rounds: sent.rounds,
      sentBytes: sent.sentBytes,
      allMs: t.allMs - startMs,
      check: t.check,
    };
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
