/**
 * The pre-copy chain side of one dump (`preDump`, `parent`): loads the
 * parent, drops the tracking of an abandoned chain, records the chain in
 * the manifest, and on failure removes every tracking the dump touched
 * (a re-armed tracking no longer matches any image). See
 * engine/dump/tracking.ts.
 *
 * @module
 */

import { CHAIN_FORMAT_VERSION, type Manifest } from "../model.ts";
import { TargetError } from "../errors.ts";
import type { FrozenTree } from "./freeze.ts";
import { ParentPages } from "./parent.ts";
import {
  allTrackingFds,
  cancelTracking,
  clearTracking,
  closeTracking,
  trackingFdsOf,
} from "./tracking.ts";
import { readTrackingState, removeTrackingState, writeTrackingState } from "./tracking_state.ts";

/** The chain state of one dump of the tree of `root`. */
export class ChainDump {
  readonly #root: number;
  readonly #opts: { preDump?: boolean; parent?: string; leaveRunning?: boolean };
  readonly #generation = crypto.randomUUID();
  #parent?: ParentPages;
  /** The dump armed, re-armed or read the tracking: a failure must remove it. */
  touched = false;
  /** The tree is frozen by this dump now. */
  frozen = false;

  constructor(root: number, opts: { preDump?: boolean; parent?: string; leaveRunning?: boolean }) {
    this.#root = root;
    this.#opts = opts;
  }

  /**
   * Before anything is frozen: loads the parent (refusing a bad one), or,
   * without one, removes the tracking a previous pre-dump left.
   */
  async begin(): Promise<ParentPages | undefined> {
    if (this.#opts.parent) {
      this.#parent = await ParentPages.load(this.#opts.parent, this.#root);
      return this.#parent;
    }
    const stale = readTrackingState(this.#root);
    if (stale) {
      cancelTracking(this.#root, stale.fds.map((f) => f.fd));
      removeTrackingState(this.#root);
    }
    return undefined;
  }

  /**
   * The tree is frozen by the dump: a parent must still be the latest
   * pre-dump (another cryo may have run since it was loaded), and the
   * recorded generation is withdrawn until this dump succeeds (its
   * tracking is about to change).
   */
  onFrozen(): void {
    this.frozen = true;
    const head = this.#parent?.chain[0];
    if (head) {
      const state = readTrackingState(this.#root);
      if (state && state.generation !== head.manifest.tracking?.generation) {
        throw new TargetError(
          `${head.dir} is no longer the latest pre-dump of pid ${this.#root} (a dump ran meanwhile)`,
        );
      }
    }
    // A final dump that kills the tree leaves the tracking as it is (see
    // engine/dump/tracking.ts detachTracking): it stays valid until the kill.
    const kept = this.#parent && !this.#opts.preDump && !this.#opts.leaveRunning;
    if ((this.#parent || this.#opts.preDump) && !kept) removeTrackingState(this.#root);
  }

  /** The manifest's `parent` (and chain format version) and `tracking`. */
  manifestFields(
    parent: ParentPages | undefined,
    tree: FrozenTree,
  ): Partial<Pick<Manifest, "parent" | "tracking" | "formatVersion">> {
    const out: Partial<Pick<Manifest, "parent" | "tracking" | "formatVersion">> = {};
    if (parent) {
      out.parent = { dir: parent.chain[0].dir, manifestSha256: parent.manifestSha256 };
      out.formatVersion = CHAIN_FORMAT_VERSION;
    }
    if (this.#opts.preDump) {
      out.tracking = {
        generation: this.#generation,
        fds: tree.processes.flatMap((p) => trackingFdsOf(p.pid).map((fd) => ({ pid: p.pid, fd }))),
      };
    }
    return out;
  }

  /** The image is in place: records the chain's latest pre-dump, or ends the chain. */
  done(manifest: Manifest, dir: string, tree: FrozenTree): void {
    if (manifest.tracking) {
      writeTrackingState(this.#root, manifest.tracking.generation, dir, manifest.tracking.fds);
    } else if (this.#parent) {
      removeTrackingState(this.#root);
    }
    for (const p of tree.processes) clearTracking(p.pid);
    this.#parent?.release?.release();
  }

  /** The dump failed: removes the tracking it touched from the tree. */
  failed(tree: FrozenTree | undefined): void {
    this.#parent?.release?.release();
    if (!this.touched) return;
    const fds = new Set((this.#parent?.tracking?.fds ?? []).map((f) => f.fd));
    for (const fd of allTrackingFds()) fds.add(fd);
    try {
      if (tree && this.frozen) closeTracking(tree.processes.map((p) => p.pid), [...fds]);
      else cancelTracking(this.#root, [...fds]);
    } catch { /* the tree is gone or cannot be stopped: nothing more to do */ }
    removeTrackingState(this.#root);
    for (const p of tree?.processes ?? []) clearTracking(p.pid);
  }
}

/**
 * `pre-dump --cancel`: removes the tracking the latest pre-dump left in the
 * tree of `root` (an abandoned chain). Returns how many fds were closed;
 * throws when cryo knows no pre-dump of this tree.
 */
export function cancelPreDump(root: number): number {
  const state = readTrackingState(root);
  if (!state) throw new TargetError(`no pre-dump tracking is armed in the tree of pid ${root}`);
  const n = cancelTracking(root, state.fds.map((f) => f.fd));
  removeTrackingState(root);
  return n;
}
