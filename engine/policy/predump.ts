/**
 * Pre-copy for a policy (`preDump: { every }`): between checkpoints the
 * runner pre-dumps the target into a private scratch chain (a hidden
 * directory of the checkpoint directory, never seen by retention), and the
 * next checkpoint is dumped with the latest pre-dump as its parent, so the
 * tree is frozen only for the pages written since. That chained image is
 * then flattened (engine/image/chain.ts) into the store while the tree runs,
 * so every stored checkpoint is self-contained and retention can delete
 * any of them; the scratch chain is removed and the next pre-dump starts a
 * new one.
 *
 * When a pre-dump fails, the chain is dropped (with any tracking left in
 * the tree) and the next checkpoint is a plain one; when the chained
 * checkpoint fails, the caller falls back to a plain checkpoint. Stopping
 * removes the tracking left in a tree that runs on.
 *
 * @module
 */

import { checkpoint, type CheckpointOptions, type CheckpointResult } from "../dump/mod.ts";
import { cancelPreDump } from "../dump/chain_dump.ts";
import { readTrackingState } from "../dump/tracking_state.ts";
import { flattenImage } from "../image/chain.ts";

/** What one pre-dump did, for the runner's events. */
export interface PreDumpDone {
  /** Bytes of pages it stored. */
  bytes: number;
  /** How long the tree was frozen, in seconds. */
  frozenSeconds: number;
  /** Pre-dumps in the current chain, this one included. */
  depth: number;
}

/** The pre-dump chain of one policy run. */
export class PreDumpChain {
  readonly #storeDir: string;
  #scratch: string | undefined;
  #latest: string | undefined;
  #depth = 0;
  #seq = 0;

  /** A chain whose scratch directory will live in `storeDir`. */
  constructor(storeDir: string) {
    this.#storeDir = storeDir;
  }

  /**
   * The chain of a run on `storeDir`: scratch images a previous runner left
   * there (it died mid-chain; one runner per directory) are removed.
   */
  static async open(storeDir: string): Promise<PreDumpChain> {
    for await (const e of Deno.readDir(storeDir)) {
      if (e.isDirectory && e.name.startsWith(".predump-")) {
        await Deno.remove(`${storeDir}/${e.name}`, { recursive: true }).catch(() => {});
      }
    }
    return new PreDumpChain(storeDir);
  }

  /** The latest pre-dump of the current chain, if any. */
  get latest(): string | undefined {
    return this.#latest;
  }

  async #next(what: string): Promise<string> {
    this.#scratch ??= await Deno.makeTempDir({ dir: this.#storeDir, prefix: ".predump-" });
    return `${this.#scratch}/${String(++this.#seq).padStart(4, "0")}-${what}`;
  }

  /**
   * One pre-dump of the tree of `pid`, on top of the latest one. On
   * failure the chain is dropped (the dump removed what it armed) and the
   * error is thrown.
   */
  async preDump(pid: number, opts: Omit<CheckpointOptions, "dir">): Promise<PreDumpDone> {
    const dir = await this.#next("pre");
    try {
      const r = await checkpoint(pid, {
        ...opts,
        dir,
        preDump: true,
        ...(this.#latest ? { parent: this.#latest } : {}),
      });
      this.#latest = dir;
      this.#depth++;
      return {
        bytes: r.stats.pagesBytes,
        frozenSeconds: r.stats.freezeSeconds,
        depth: this.#depth,
      };
    } catch (e) {
      await this.close(pid);
      throw e;
    }
  }

  /**
   * A checkpoint of `pid` with the latest pre-dump as its parent, flattened
   * into `out` (self-contained); the chain is removed afterwards, whatever
   * happens. Throws when there is no pre-dump to build on.
   */
  async checkpoint(
    pid: number,
    out: string,
    opts: Omit<CheckpointOptions, "dir" | "parent" | "preDump">,
  ): Promise<CheckpointResult> {
    const parent = this.#latest;
    if (!parent) throw new Error("no pre-dump to build on");
    try {
      const dir = await this.#next("final");
      const r = await checkpoint(pid, { ...opts, dir, parent });
      const manifest = await flattenImage(dir, out);
      return { ...r, dir: out, manifest };
    } finally {
      await this.reset();
    }
  }

  /** Forgets the chain and removes its scratch images (the tracking is the dumps' business). */
  async reset(): Promise<void> {
    this.#latest = undefined;
    this.#depth = 0;
    const scratch = this.#scratch;
    this.#scratch = undefined;
    if (scratch) await Deno.remove(scratch, { recursive: true }).catch(() => {});
  }

  /**
   * The run ends or the target is gone: removes the tracking a pre-dump
   * left in a tree that still runs (returns how many fds were closed),
   * and the scratch images.
   */
  async close(pid: number | undefined): Promise<number> {
    let closed = 0;
    if (pid !== undefined && readTrackingState(pid)) {
      try {
        closed = cancelPreDump(pid);
      } catch { /* the tree is gone */ }
    }
    await this.reset();
    return closed;
  }
}
