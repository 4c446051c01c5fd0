/**
 * Fds of namespaces (nsfs: `open("/proc/self/ns/net")`, a link target such
 * as `net:[4026531833]`). One naming a namespace the holder itself is in —
 * the same link as one of its `/proc/<pid>/ns/` entries at dump, recorded
 * as `ns-own` — is opened again from `/proc/self/ns/<entry>` by the
 * restored process, which is in the same namespaces (the dump refuses a
 * tree in namespaces other than cryo's; a tree launched in its own, or
 * restored with --new-pid-ns, gets the namespace it lives in now, as it
 * did). An fd of any other namespace is refused by name.
 *
 * @module
 */

import type { FdInfo } from "../model.ts";
import { readProcLink } from "../proc/io.ts";
import type { FdSource } from "./types.ts";

/** The link target of an nsfs fd: `<type>:[<inode>]`. */
export const NSFS_LINK = /^(net|uts|ipc|pid|user|mnt|cgroup|time):\[\d+\]$/;

/**
 * Dump: the entry of `/proc/<pid>/ns/` whose link is `target` (`net`,
 * `pid_for_children`, ...), or undefined when the fd names a namespace the
 * process is not in.
 */
export function ownNamespaceLink(pid: number, target: string): string | undefined {
  const type = target.slice(0, target.indexOf(":"));
  for (const entry of [type, `${type}_for_children`]) {
    try {
      if (readProcLink(pid, `ns/${entry}`) === target) return entry;
    } catch { /* no such entry on this kernel */ }
  }
  return undefined;
}

/** Restore plan of an nsfs fd of one of the holder's own namespaces, or undefined. */
export function planNsfd(f: FdInfo): FdSource | undefined {
  const own = f.extra["ns-own"];
  if (f.kind !== "unknown" || !NSFS_LINK.test(f.target) || !own || !/^[a-z_]+$/.test(own)) {
    return undefined;
  }
  return { kind: "open", path: `/proc/self/ns/${own}`, flags: f.flags & 0o3 };
}
