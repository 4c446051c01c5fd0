/**
 * The sending side of a live migration (`cryo migrate`): pre-dump rounds
 * into a private temporary directory while the tree runs (each the parent
 * of the next), each image directory streamed to the receiver as it is
 * finished; then a final dump (the tree frozen only for the last dirty
 * set, stopped with SIGSTOP as soon as it is thawed), sent, and once the
 * receiver says everything is written and synced, the source tree is
 * killed. Any failure before that point leaves the source running: the
 * tracking is removed and a stopped tree continued; a guard process
 * (engine/migrate/guard.ts) does the same if the sender dies, even by
 * SIGKILL. See engine/migrate/wire.ts.
 *
 * @module
 */

import { relative } from "node:path";
import { checkpoint, type CheckpointResult } from "../dump/mod.ts";
import { cancelPreDump } from "../dump/chain_dump.ts";
import { CryoError } from "../errors.ts";
import { type Channel, connectReceiver, FRAME } from "./wire.ts";
import { SourceGuard } from "./guard_spawn.ts";
import { pausePoint } from "../pause.ts";
import { makeWorkDir } from "./work_dir.ts";

/** Options of {@link migrate}. */
export interface MigrateOptions {
  host: string;
  port: number;
  /** The shared secret. */
  key: Uint8Array;
  /** Most pre-dump rounds before the final dump (default 3, at least 1). */
  rounds?: number;
  /** Progress callback (the engine never prints). */
  onEvent?: (e: MigrateEvent) => void;
  /** Aborting closes the connection: the migration fails, the source runs on. */
  signal?: AbortSignal;
}

/** Progress of a migration. */
export type MigrateEvent =
  | { type: "connected" }
  | { type: "round"; round: number; final: boolean; bytes: number; sentBytes: number }
  | { type: "switched"; pids: number[] };

/** What a migration did. */
export interface MigrateResult {
  /** Rounds sent, the final dump included. */
  rounds: number;
  /** Bytes of image files sent. */
  sentBytes: number;
  /** Seconds the tree was frozen by the final dump. */
  frozenSeconds: number;
}

const CHUNK = 1 << 20;

/** The files of `dir`, recursively, as paths relative to it. */
async function filesOf(dir: string, sub = dir): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(sub)) {
    const p = `${sub}/${e.name}`;
    if (e.isDirectory) out.push(...await filesOf(dir, p));
    else if (e.isFile) out.push(relative(dir, p));
    else throw new CryoError(`${p}: not a regular file in an image directory`);
  }
  return out.sort();
}

/** Streams image directory `dir` as round `round`; returns the bytes sent. */
async function sendRound(ch: Channel, dir: string, round: number, final: boolean): Promise<number> {
  let sent = 0;
  for (const path of await filesOf(dir)) {
    const f = await Deno.open(`${dir}/${path}`);
    try {
      const size = (await f.stat()).size;
      await ch.sendJson(FRAME.file, { path, size });
      const buf = new Uint8Array(CHUNK);
      for (let left = size; left > 0;) {
        const n = await f.read(buf.subarray(0, Math.min(CHUNK, left)));
        if (n === null) throw new CryoError(`${dir}/${path}: shorter than its size`);
        await ch.send(FRAME.data, buf.subarray(0, n));
        left -= n;
        sent += n;
      }
    } finally {
      f.close();
    }
  }
  await ch.sendJson(FRAME.roundEnd, { round, final });
  const ack = await ch.recvJson<{ round: number }>(FRAME.ack);
  if (ack.round !== round) {
    throw new CryoError(`migration: round ${ack.round} acknowledged, not ${round}`);
  }
  return sent;
}

function signalAll(pids: number[], sig: Deno.Signal): void {
  for (const pid of pids) {
    try {
      Deno.kill(pid, sig);
    } catch { /* gone */ }
  }
}

/**
 * A migrated tree's restore cannot be given an fd (no `--inherit-fd` on
 * the receiver): a root holding a pipe or terminal leading out of the tree
 * above fd 2 (engine/fds/outside.ts) is refused before the switch.
 */
function refuseInheritFds(pid: number, r: CheckpointResult): void {
  const fds = r.inheritFdsNeeded ?? [];
  if (!fds.length) return;
  throw new CryoError(
    `fd ${fds.join(", fd ")} of ${pid} ${
      fds.length === 1 ? "is a pipe or terminal" : "are pipes or terminals"
    } ` +
      `leading out of the tree: a migrated tree's restore cannot be given ${
        fds.length === 1 ? "it" : "them"
      } (--inherit-fd)`,
  );
}

/**
 * Migrates the tree of `pid` to the receiver at `host`:`port`. On success
 * the source tree is killed; on any failure it runs on (and the error is
 * thrown).
 */
export async function migrate(pid: number, opts: MigrateOptions): Promise<MigrateResult> {
  const maxRounds = Math.max(1, opts.rounds ?? 3);
  const conn = await Deno.connect({ hostname: opts.host, port: opts.port }).catch((e) => {
    throw new CryoError(`cannot connect to ${opts.host}:${opts.port}: ${e.message}`);
  });
  const onAbort = () => conn.close();
  opts.signal?.addEventListener("abort", onAbort);
  const tmp = await makeWorkDir();
  let guard: SourceGuard;
  try {
    guard = SourceGuard.start(pid);
  } catch (e) {
    conn.close();
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw e;
  }
  let tracking = false;
  let stopped: number[] = [];
  let switched = false;
  try {
    const ch = await connectReceiver(conn, opts.key);
    opts.onEvent?.({ type: "connected" });
    let parent: string | undefined, prevBytes = Infinity, sentBytes = 0, round = 0;
    for (; round < maxRounds; round++) {
      const dir = `${tmp}/r${round}`;
      tracking = true;
      const r = await checkpoint(pid, { dir, preDump: true, parent, sync: false });
      refuseInheritFds(pid, r);
      const sent = await sendRound(ch, dir, round, false);
      sentBytes += sent;
      opts.onEvent?.({ type: "round", round, final: false, bytes: r.stats.pagesBytes, sentBytes });
      parent = dir;
      const shrinking = r.stats.pagesBytes < prevBytes;
      prevBytes = r.stats.pagesBytes;
      if (round > 0 && !shrinking) {
        round++;
        break;
      }
    }
    // The final dump: the tree is stopped as soon as the dump thaws it.
    const seen: number[] = [];
    const dir = `${tmp}/r${round}`;
    const fin: CheckpointResult = await checkpoint(pid, {
      dir,
      parent,
      leaveRunning: true,
      sync: false,
      onEvent: (e) => {
        if (e.type === "process") seen.push(e.pid);
        if (e.type === "thawed") {
          stopped = [...seen];
          guard.stopped(stopped);
          signalAll(stopped, "SIGSTOP");
        }
      },
    });
    tracking = false;
    stopped = fin.manifest.processes.map((p) => p.pid);
    guard.stopped(stopped);
    signalAll(stopped, "SIGSTOP");
    refuseInheritFds(pid, fin); // (opened since the first round)
    pausePoint("migrate-stopped");
    sentBytes += await sendRound(ch, dir, round, true);
    opts.onEvent?.({ type: "round", round, final: true, bytes: fin.stats.pagesBytes, sentBytes });
    // The receiver holds everything, synced: the switch.
    switched = true;
    signalAll(stopped, "SIGKILL");
    stopped = [];
    guard.end(true);
    await ch.send(FRAME.switched);
    opts.onEvent?.({ type: "switched", pids: fin.manifest.processes.map((p) => p.pid) });
    ch.close();
    return { rounds: round + 1, sentBytes, frozenSeconds: fin.stats.freezeSeconds };
  } catch (e) {
    if (stopped.length) signalAll(stopped, "SIGCONT");
    if (tracking) {
      try {
        cancelPreDump(pid);
      } catch { /* no tracking left */ }
    }
    if (opts.signal?.aborted) throw new CryoError("migration interrupted: the source runs on");
    if (switched) throw e;
    throw new CryoError(`migration failed: ${(e as Error).message}; the source runs on`);
  } finally {
    guard.end(false); // after a failure: the guard continues and untracks the source too
    opts.signal?.removeEventListener("abort", onAbort);
    try {
      conn.close();
    } catch { /* closed */ }
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}
