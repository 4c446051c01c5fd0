/**
 * The checkpoint store of a policy: one subdirectory per checkpoint, named
 * so that names sort by time (`20261127T071523.123Z-0001`), a `latest`
 * symlink replaced atomically, and retention that removes old checkpoints
 * only once a newer one is complete.
 *
 * ```ts
 * import { CheckpointStore } from "./retention.ts";
 * const store = await CheckpointStore.open("/var/lib/cryo/batch");
 * const name = store.nextName();
 * // ... checkpoint(pid, { dir: store.path(name) }) ...
 * await store.setLatest(name);
 * await store.prune(3);
 * ```
 *
 * @module
 */

import { resolve } from "node:path";
import type { DumpStats, Manifest } from "../model.ts";

/** A complete checkpoint written by a policy run. */
export interface CheckpointRecord {
  /** Directory name inside the policy's `dir`, e.g. `20261127T071523.123Z-0001`. */
  name: string;
  /** Absolute path of the image directory. */
  dir: string;
  /** ISO time at which the dump was written. */
  createdAt: string;
  /** Why it was taken: `"interval"`, `"signal SIGUSR1"`, `"api"`, `"stop"`, or `"earlier run"`. */
  reason: string;
  /** Pid of the checkpointed root. */
  pid: number;
  /** The dump's statistics (sizes in bytes, times in seconds). */
  stats: DumpStats;
  /** Whether the target kept running after the dump (unknown for earlier runs' checkpoints). */
  leftRunning?: boolean;
}

/**
 * Name of the symlink pointing at the newest complete checkpoint.
 *
 * ```ts
 * const tree = await restore(`/var/lib/cryo/batch/${LATEST}`);
 * ```
 */
export const LATEST = "latest";

const NAME = /^(\d{8}T\d{6}\.\d{3}Z)-(\d{4,})$/;

/** Whether `name` is a checkpoint directory name of a policy store. */
export function isCheckpointName(name: string): boolean {
  return NAME.test(name);
}

/** The time-sortable stamp of `date`: `20261127T071523.123Z`. */
export function timeStamp(date: Date): string {
  return date.toISOString().replace(/[-:]/g, "");
}

function compareNames(a: string, b: string): number {
  const [, ta, sa] = a.match(NAME)!;
  const [, tb, sb] = b.match(NAME)!;
  return ta < tb ? -1 : ta > tb ? 1 : Number(sa) - Number(sb);
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * The checkpoints of one policy, in one directory.
 *
 * ```ts
 * const store = await CheckpointStore.open("/var/lib/cryo/batch");
 * console.log(await store.list(), await store.latest());
 * ```
 */
export class CheckpointStore {
  /** Absolute path of the store's directory. */
  readonly root: string;
  #seq = 0;

  private constructor(root: string) {
    this.root = root;
  }

  /** Opens (creating it if needed) the store in `dir`. */
  static async open(dir: string): Promise<CheckpointStore> {
    const store = new CheckpointStore(resolve(dir));
    await Deno.mkdir(store.root, { recursive: true });
    for (const name of await store.list()) {
      store.#seq = Math.max(store.#seq, Number(name.match(NAME)![2]));
    }
    return store;
  }

  /** Absolute path of checkpoint `name`. */
  path(name: string): string {
    return `${this.root}/${name}`;
  }

  /**
   * A fresh name for the next checkpoint: the time, then a sequence number
   * that keeps growing across runs, so names sort by time and never repeat.
   */
  nextName(now: Date = new Date()): string {
    this.#seq++;
    return `${timeStamp(now)}-${String(this.#seq).padStart(4, "0")}`;
  }

  /** Names of the complete checkpoints (those with a manifest), oldest first. */
  async list(): Promise<string[]> {
    const names: string[] = [];
    for await (const e of Deno.readDir(this.root)) {
      if (!e.isDirectory || !isCheckpointName(e.name)) continue;
      if (await exists(`${this.root}/${e.name}/manifest.json`)) names.push(e.name);
    }
    return names.sort(compareNames);
  }

  /** Name of the checkpoint `latest` points at, if it points at a complete one. */
  async latest(): Promise<string | undefined> {
    let target: string;
    try {
      target = await Deno.readLink(`${this.root}/${LATEST}`);
    } catch {
      return undefined;
    }
    const name = target.split("/").filter(Boolean).at(-1) ?? "";
    if (!isCheckpointName(name)) return undefined;
    return (await exists(`${this.root}/${name}/manifest.json`)) ? name : undefined;
  }

  /** Points `latest` at checkpoint `name`, atomically (a new symlink renamed over the old one). */
  async setLatest(name: string): Promise<void> {
    const tmp = `${this.root}/.${LATEST}.tmp-${Deno.pid}`;
    await Deno.remove(tmp).catch(() => {});
    await Deno.symlink(name, tmp);
    await Deno.rename(tmp, `${this.root}/${LATEST}`);
  }

  /** Removes the `latest` symlink (nothing left to continue from); the checkpoints stay. */
  async clearLatest(): Promise<void> {
    await Deno.remove(`${this.root}/${LATEST}`).catch(() => {});
  }

  /**
   * Removes the oldest complete checkpoints so that `keep` remain; the one
   * `latest` points at is never removed. Returns the removed names.
   */
  async prune(keep: number): Promise<string[]> {
    const names = await this.list();
    const latest = await this.latest();
    const excess = names.slice(0, Math.max(0, names.length - keep)).filter((n) => n !== latest);
    for (const name of excess) {
      // Rename first, so that a crash in the middle never leaves a half-removed checkpoint
      // that still looks complete.
      const doomed = `${this.root}/.${name}.removing`;
      await Deno.rename(this.path(name), doomed);
      await Deno.remove(doomed, { recursive: true });
    }
    return excess;
  }

  /** The record of an existing checkpoint, read from its manifest (e.g. one of an earlier run). */
  async record(name: string, reason = "earlier run"): Promise<CheckpointRecord> {
    const manifest = JSON.parse(
      await Deno.readTextFile(`${this.path(name)}/manifest.json`),
    ) as Manifest;
    return {
      name,
      dir: this.path(name),
      createdAt: manifest.createdAt,
      reason,
      pid: manifest.rootPid,
      stats: manifest.stats,
    };
  }
}
