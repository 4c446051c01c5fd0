/**
 * The receiving side of a live migration (`cryo receive`): accepts one
 * sender that proves the shared secret (engine/migrate/wire.ts), writes
 * each round's authenticated files into a private partial directory next
 * to the target (`.<name>.migrate-<pid>/r<k>.part`, renamed to `r<k>` when
 * the round is complete and synced, its parent reference pointed at the
 * local copy of the previous round), flattens the final round's chain into
 * the image directory, and acknowledges. Nothing reaches the image
 * directory before the final round is complete; a failure removes the
 * partial directory, and one left by a receiver that was killed (its pid
 * no longer running) is removed by the next reception into the same
 * directory.
 *
 * @module
 */

import { basename, dirname, resolve } from "node:path";
import { flattenImage, manifestSha256 } from "../image/chain.ts";
import { readManifest, verifyImageDir, writeManifest } from "../image/manifest.ts";
import type { LazyEnsure } from "../memory/lazy_serve.ts";
import { StreamingFlatten } from "./stream_flatten.ts";
import { CryoError } from "../errors.ts";
import { checkClocks } from "../task/clocks.ts";
import { acceptSender, type Channel, FRAME } from "./wire.ts";

/** Options of {@link receive}. */
export interface ReceiveOptions {
  /** The image directory to write (must not exist). */
  dir: string;
  /** The shared secret. */
  key: Uint8Array;
  /** Progress callback (the engine never prints). */
  onEvent?: (e: ReceiveEvent) => void;
  /** Aborting stops listening / closes the connection (the partial directory is removed). */
  signal?: AbortSignal;
  /**
   * For a lazy restore: the chain is not merged before the switch; the
   * result's `pending` is restored while the merge goes on
   * (engine/migrate/stream_flatten.ts). Each round is checked (checksums)
   * as it arrives instead of all at the end.
   */
  deferMerge?: boolean;
  /**
   * The tree will be restored here: the final round's clocks are checked
   * before it is acknowledged (engine/task/clocks.ts), so that a host whose
   * clocks are behind fails the migration while the source still runs.
   * "allow": restore anyway; undefined: no check (the image is only written).
   */
  clockCheck?: "check" | "allow";
}

/** An image restorable before it is complete (see {@link ReceiveOptions.deferMerge}). */
export interface PendingImage {
  /** The directory to restore from (lazily, checksums not checked, with {@link ensure}). */
  dir: string;
  /** The lazy server's hook: copies pages into the image before they are read. */
  ensure: LazyEnsure;
  /**
   * Finishes the image (every page, checksums), renames it to the
   * reception's `dir` and removes the partial directory. Returns the bytes
   * of pages copied into it after the restore began.
   */
  complete(): Promise<number>;
}

/** What {@link receive} received. */
export interface Received {
  /** The image directory (complete, or once `pending` is completed). */
  dir: string;
  rounds: number;
  bytes: number;
  /** With `deferMerge`: the image still being merged. */
  pending?: PendingImage;
}

/** Progress of a reception. */
export type ReceiveEvent =
  | { type: "listening"; hostname: string; port: number }
  | { type: "authenticated"; peer: string }
  | { type: "round"; round: number; final: boolean; bytes: number };

/** A safe relative path inside an image directory, or a thrown error. */
function checkPath(path: unknown): string {
  if (typeof path !== "string" || path === "" || path.startsWith("/")) {
    throw new CryoError(`migration: bad file path ${JSON.stringify(path)}`);
  }
  for (const part of path.split("/")) {
    if (part === "" || part === "." || part === "..") {
      throw new CryoError(`migration: bad file path ${JSON.stringify(path)}`);
    }
  }
  return path;
}

/** Receives one round into `into` (created); returns {final, bytes}. */
async function receiveRound(
  ch: Channel,
  into: string,
  round: number,
): Promise<{ final: boolean; bytes: number }> {
  await Deno.mkdir(into, { mode: 0o700 });
  let file: Deno.FsFile | undefined, left = 0, bytes = 0, name = "";
  const closeFile = async () => {
    if (!file) return;
    if (left !== 0) throw new CryoError(`migration: ${name} ended ${left} bytes short`);
    await file.sync();
    file.close();
    file = undefined;
  };
  try {
    for (;;) {
      const f = await ch.recv();
      if (f.type === FRAME.data) {
        if (!file || f.payload.length > left) throw new CryoError("migration: unexpected data");
        let off = 0;
        while (off < f.payload.length) off += await file.write(f.payload.subarray(off));
        left -= f.payload.length;
        bytes += f.payload.length;
        continue;
      }
      await closeFile();
      const msg = JSON.parse(new TextDecoder().decode(f.payload));
      if (f.type === FRAME.file) {
        name = checkPath(msg.path);
        if (!Number.isSafeInteger(msg.size) || msg.size < 0) {
          throw new CryoError(`migration: bad size of ${name}`);
        }
        await Deno.mkdir(dirname(`${into}/${name}`), { recursive: true, mode: 0o700 });
        file = await Deno.open(`${into}/${name}`, { write: true, createNew: true, mode: 0o600 });
        left = msg.size;
      } else if (f.type === FRAME.roundEnd) {
        if (msg.round !== round) throw new CryoError(`migration: round ${msg.round}, not ${round}`);
        return { final: !!msg.final, bytes };
      } else {
        throw new CryoError(`migration: unexpected frame ${f.type}`);
      }
    }
  } finally {
    file?.close();
  }
}

/**
 * A partial directory holding this file may be the only copy of a migrated
 * tree (its final round was acknowledged before the merge): never removed as stale.
 */
const SWITCHED = "SWITCHED";

/** Removes the partial directories next to `dir` whose writer is no longer running. */
async function removeStalePartials(dir: string): Promise<void> {
  // Its own partial directories, and a flatten's (engine/image/chain.ts) into the same target.
  const prefixes = [`.${basename(dir)}.migrate-`, `.${basename(dir)}.flatten-`];
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(dirname(dir))];
  } catch {
    return; // the parent does not exist: the reception fails later, by name
  }
  for (const e of entries) {
    const prefix = prefixes.find((p) => e.name.startsWith(p));
    if (!e.isDirectory || !prefix) continue;
    const pid = e.name.slice(prefix.length);
    if (!/^\d+$/.test(pid) || Number(pid) === Deno.pid) continue;
    try {
      Deno.statSync(`/proc/${pid}`);
      continue; // another receiver may be writing it
    } catch { /* its receiver is gone */ }
    try {
      Deno.statSync(`${dirname(dir)}/${e.name}/${SWITCHED}`);
      continue; // after the switch: the only copy of the tree (its chain: cryo image flatten)
    } catch { /* before the switch: nothing of value */ }
    await Deno.remove(`${dirname(dir)}/${e.name}`, { recursive: true }).catch(() => {});
  }
}

/** Points the manifest of round `dir` at `parent` (the local copy of the previous round). */
async function relinkParent(dir: string, parent: string | undefined): Promise<void> {
  const m = await readManifest(dir);
  if (!m.parent) {
    if (parent) throw new CryoError("migration: a later round without a parent");
    return;
  }
  if (!parent) throw new CryoError("migration: the first round names a parent");
  m.parent = { dir: parent, manifestSha256: await manifestSha256(parent) };
  await writeManifest(dir, m);
}

/**
 * Listens on `hostname`:`port`, receives one migration into `opts.dir`
 * and returns once the sender says the source is killed (the caller
 * restores). Throws (removing everything it wrote) on any failure,
 * including a sender that does not prove the key.
 */
export async function receive(
  hostname: string,
  port: number,
  opts: ReceiveOptions,
): Promise<Received> {
  const dir = resolve(opts.dir);
  try {
    await Deno.lstat(dir);
    throw new CryoError(`${dir} exists already`);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  await removeStalePartials(dir);
  const listener = Deno.listen({ hostname, port });
  const addr = listener.addr as Deno.NetAddr;
  opts.onEvent?.({ type: "listening", hostname: addr.hostname, port: addr.port });
  let conn: Deno.Conn | undefined;
  const onAbort = () => {
    try {
      listener.close();
    } catch { /* closed */ }
    try {
      conn?.close();
    } catch { /* closed */ }
  };
  opts.signal?.addEventListener("abort", onAbort);
  const partial = `${dirname(dir)}/.${basename(dir)}.migrate-${Deno.pid}`;
  let ch: Channel | undefined;
  let acked = false;
  /** The partial directory outlives this call (pending, or the only copy of the tree). */
  let keepPartial = false;
  try {
    conn = await listener.accept().catch(() => {
      throw new CryoError("interrupted before a sender connected");
    });
    listener.close();
    ch = await acceptSender(conn, opts.key);
    const peer = conn.remoteAddr as Deno.NetAddr;
    opts.onEvent?.({ type: "authenticated", peer: `${peer.hostname}:${peer.port}` });
    await Deno.mkdir(partial, { mode: 0o700 });
    let prev: string | undefined, bytes = 0;
    for (let round = 0;; round++) {
      const part = `${partial}/r${round}.part`, done = `${partial}/r${round}`;
      const r = await receiveRound(ch, part, round);
      bytes += r.bytes;
      await relinkParent(part, prev);
      await Deno.rename(part, done);
      prev = done;
      if (opts.deferMerge) await verifyImageDir(done); // its sizes and checksums, now
      if (r.final) {
        if (opts.clockCheck === "check") checkClocks(await readManifest(done));
        let sf: StreamingFlatten | undefined;
        if (opts.deferMerge) sf = await StreamingFlatten.prepare(done, `${partial}/flat`, dir);
        else await flattenImage(done, dir); // checks the whole chain; written aside, then renamed
        // Once acknowledged, the source may be killed: the chain here may be the only copy.
        if (sf) await Deno.writeTextFile(`${partial}/${SWITCHED}`, "");
        await ch.sendJson(FRAME.ack, { round });
        acked = true;
        opts.onEvent?.({ type: "round", round, final: true, bytes });
        const f = await ch.recv().catch((e) => {
          sf?.close();
          throw e;
        });
        if (f.type !== FRAME.switched) throw new CryoError(`migration: unexpected frame ${f.type}`);
        let pending: PendingImage | undefined;
        if (sf) {
          const merge = sf;
          keepPartial = true;
          pending = {
            dir: merge.dir,
            ensure: merge.ensure,
            complete: async () => {
              try {
                await merge.complete();
                return merge.deferredBytes;
              } finally {
                await Deno.remove(partial, { recursive: true }).catch(() => {});
              }
            },
          };
        }
        return { dir, rounds: round + 1, bytes, pending };
      }
      await ch.sendJson(FRAME.ack, { round });
      opts.onEvent?.({ type: "round", round, final: false, bytes });
    }
  } catch (e) {
    if (acked && opts.deferMerge) {
      // The source may be gone: the received chain is the only copy; it stays.
      keepPartial = true;
      throw new CryoError(
        `the sender did not confirm the switch (${(e as Error).message}); the received ` +
          `chain is kept in ${partial}/r* (cryo image flatten): check that the source is gone`,
      );
    }
    if (acked) {
      throw new CryoError(
        `the sender did not confirm the switch (${
          (e as Error).message
        }); the image is kept in ${dir}: ` +
          "check that the source is gone before restoring it",
      );
    }
    // The switch did not happen: the image is not ours to keep (the source runs on).
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    if (opts.signal?.aborted) throw new CryoError("reception interrupted: nothing was kept");
    throw e;
  } finally {
    opts.signal?.removeEventListener("abort", onAbort);
    ch?.close();
    try {
      listener.close();
    } catch { /* closed */ }
    if (!keepPartial) await Deno.remove(partial, { recursive: true }).catch(() => {});
  }
}
