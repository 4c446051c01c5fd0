/**
 * The namespaces of a launched tree besides its pid namespace: its own
 * UTS namespace (uts.ts), its own IPC namespace (ipc.ts), and the tmpfs
 * mounts of its mount namespace (mounts.ts).
 *
 * Outside, {@link namespaceExtrasOf} says which the tree has: a UTS or IPC
 * namespace that is not cryo's is entered by cryo's engine together with
 * the pid and mount namespaces (so every process of the tree must share it,
 * as for every namespace: a process in another one is refused by name,
 * engine/task/placement.ts). Inside, the dump records them into the
 * manifest (`namespaces`); a restore makes fresh UTS and IPC namespaces
 * when the image has them, and re-creates their content and the mounts
 * before the tree is created.
 *
 * @module
 */

import { CLONE_NS } from "../../ffi/ns.ts";
import type { NamespaceExtras, SysvShmSegment } from "../model.ts";
import type { Refusals } from "../support.ts";
import { collectUts, restoreUts } from "./uts.ts";
import { collectIpc, restoreIpc } from "./ipc.ts";
import { collectMounts, extraMounts, type MountLine, restoreMounts } from "./mounts.ts";

/** What the inner dump is told about the tree's other namespaces. */
export interface NamespaceExtrasRequest {
  /** It has a UTS namespace of its own (entered). */
  uts: boolean;
  /** It has an IPC namespace of its own (entered). */
  ipc: boolean;
  /** Its mounts that cryo's namespace does not have. */
  mounts: (MountLine & { outside: boolean })[];
}

const differs = (pid: number, ns: string) =>
  Deno.readLinkSync(`/proc/${pid}/ns/${ns}`) !== Deno.readLinkSync(`/proc/self/ns/${ns}`);

/** Outside, by the root's host pid: which other namespaces the tree has. */
export function namespaceExtrasOf(pid: number): NamespaceExtrasRequest {
  return { uts: differs(pid, "uts"), ipc: differs(pid, "ipc"), mounts: extraMounts(pid) };
}

/** The setns/unshare flags of the namespaces in `x` besides pid and mount ones. */
export function extraNamespaceFlags(x: { uts?: unknown; ipc?: unknown } | undefined): bigint {
  return (x?.uts ? CLONE_NS.NEWUTS : 0n) | (x?.ipc ? CLONE_NS.NEWIPC : 0n);
}

/**
 * Dump (inside the tree's namespaces, tree frozen): what they hold. The
 * unattached shm segments of its IPC namespace are appended to `sysvShm`.
 */
export function collectNamespaceExtras(
  req: NamespaceExtrasRequest,
  dir: string,
  sysvShm: SysvShmSegment[],
  refusals: Refusals,
): NamespaceExtras | undefined {
  const out: NamespaceExtras = {};
  if (req.uts && refusals.use("task.launched-uts", "its own UTS namespace")) out.uts = collectUts();
  if (req.ipc) out.ipc = collectIpc(dir, `${dir}/.mqueue`, sysvShm, refusals);
  const mounts = collectMounts(req.mounts, dir, refusals);
  if (mounts.length) out.mounts = mounts;
  return Object.keys(out).length ? out : undefined;
}

/** Restore (inside the fresh namespaces, before the tree is created): their content. */
export function restoreNamespaceExtras(x: NamespaceExtras | undefined, dir: string): void {
  if (!x) return;
  if (x.uts) restoreUts(x.uts);
  if (x.ipc) restoreIpc(x.ipc);
  if (x.mounts) restoreMounts(x.mounts, dir);
}

/**
 * The first of `paths` (cryo's image and scratch directories, which its
 * engine inside the tree's mount namespace must reach) that one of the
 * tree's own mounts hides there, as a sentence; undefined when none is.
 */
export function hiddenPath(
  mountPoints: readonly string[],
  paths: readonly { what: string; path: string }[],
): string | undefined {
  for (const { what, path } of paths) {
    const mp = mountPoints.find((m) => m === "/" || path === m || path.startsWith(`${m}/`));
    if (mp !== undefined) {
      return `the tree's own mount ${mp} hides cryo's ${what} ${path} (choose another directory` +
        `${what === "image directory" ? "" : ", through TMPDIR"})`;
    }
  }
  return undefined;
}
