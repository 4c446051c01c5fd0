/**
 * Whether a dump or restore is one of a tree in its own pid namespace
 * (`cryo launch`): the two checks every dump and restore makes, kept apart
 * from engine/pidns/mod.ts so that the common path does not load the
 * namespace machinery (dump and restore import mod.ts only when one of
 * these says yes).
 *
 * @module
 */

import { resolve } from "../path.ts";
import type { Manifest } from "../model.ts";
import { readStatus } from "../proc/status.ts";
import { inOtherUserNs } from "./userns.ts";

function mountKeys(file: string): string[] {
  return Deno.readTextFileSync(file).split("\n").filter((l) => l.includes(" - ")).map((l) => {
    const [left, right] = l.split(" - ");
    const [fstype, source] = right.split(" ");
    return `${left.split(" ")[4]} ${fstype} ${source}`;
  }).sort();
}

/**
 * Whether `pid` is the root of a tree launched by `cryo launch`: pid 1 of
 * a pid namespace directly below cryo's, in a mount namespace that differs
 * from cryo's by one more proc mount on /proc (and mounts of its own,
 * engine/pidns/mounts.ts).
 */
export function ownNamespaceRoot(pid: number): boolean {
  let theirs: number[];
  try {
    theirs = readStatus(pid).nspid;
  } catch {
    return false;
  }
  const ours = readStatus(Deno.pid).nspid;
  if (theirs.length !== ours.length + 1 || theirs[theirs.length - 1] !== 1) return false;
  try {
    // A rootless launch: a user namespace of its own, mapping one uid and one gid to themselves.
    if (inOtherUserNs(pid) && !identityMapped(pid)) return false;
    if (Deno.readLinkSync(`/proc/${pid}/ns/mnt`) === Deno.readLinkSync("/proc/self/ns/mnt")) {
      return false;
    }
    const extra = [...mountKeys(`/proc/${pid}/mountinfo`)];
    for (const k of mountKeys("/proc/self/mountinfo")) {
      const i = extra.indexOf(k);
      if (i < 0) return false;
      extra.splice(i, 1);
    }
    // Its own mounts besides /proc are recorded or refused by name (extras.ts).
    return extra.includes("/proc proc proc");
  } catch {
    return false;
  }
}

/** Whether the user namespace of `pid` maps exactly one uid and one gid, each to itself. */
function identityMapped(pid: number): boolean {
  return ["uid_map", "gid_map"].every((f) => {
    const lines = Deno.readTextFileSync(`/proc/${pid}/${f}`).trim().split("\n");
    const [inside, outside, count] = lines[0].trim().split(/\s+/);
    return lines.length === 1 && inside === outside && count === "1";
  });
}

/** Reads the manifest's pid namespace mark, if any (undefined for an unreadable manifest). */
export function manifestPidNamespace(dir: string): string | undefined {
  try {
    const m = JSON.parse(Deno.readTextFileSync(`${resolve(dir)}/manifest.json`)) as Manifest;
    return m.pidNamespace;
  } catch {
    return undefined;
  }
}
