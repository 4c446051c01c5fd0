/**
 * Process groups and sessions across the tree, checked before a restore is
 * attempted (at dump, by the restorability check, and at restore).
 *
 * A restored process is born into its parent's session and group (clone
 * inherits them), then makes its own session (setsid) or group
 * (setpgid(0, 0)) when it led one, and at finalize joins a group led by
 * another process of the tree (engine/restore/session.ts), or by a zombie
 * of the tree that leads its own group (re-created before the finalize,
 * reaped later by its parent). The root's session and group, when not its
 * own, are the restorer's. A process whose recorded session or group is
 * not what those steps give would come back silently in another one: a
 * session whose leader exited (a session cannot be joined), a parent that
 * called setsid after forking it, a group whose leader exited and was
 * reaped. Those are refused by name.
 *
 * @module
 */

import type { ProcessImage } from "../model.ts";
import type { Refusals } from "../support.ts";

/** Refuses processes of `images` (parents first) whose session or group a restore would change. */
export function checkGroupsAndSessions(images: readonly ProcessImage[], refusals: Refusals): void {
  const byPid = new Map(images.map((i) => [i.pid, i]));
  const joinable = new Set(images.map((i) => i.pid));
  for (const i of images) {
    for (const z of i.zombies ?? []) if (z.pgid === z.pid) joinable.add(z.pid);
  }
  // What the restore gives each process; the root's outside ids stand for the restorer's.
  const sid = new Map<number, number>();
  const pgid = new Map<number, number>();
  for (const p of images) {
    const parent = byPid.get(p.ppid);
    if (!parent) {
      sid.set(p.pid, p.sid);
      pgid.set(p.pid, p.pgid);
      continue;
    }
    const s = p.sid === p.pid ? p.pid : sid.get(parent.pid) ?? parent.sid;
    const g = p.pgid === p.pid || joinable.has(p.pgid)
      ? p.pgid
      : pgid.get(parent.pid) ?? parent.pgid;
    sid.set(p.pid, s);
    pgid.set(p.pid, g);
    if (s !== p.sid) {
      refusals.use(
        "task.session-other",
        `process ${p.pid}`,
        `it is in session ${p.sid}, its parent ${parent.pid} in session ${s}` +
          (byPid.has(p.sid) ? "" : ` (the leader ${p.sid} is not in the tree)`),
      );
    } else if (g !== p.pgid) {
      refusals.use(
        "task.group-leader-gone",
        `process ${p.pid}`,
        `it is in process group ${p.pgid}, whose leader is not in the tree; its parent ${parent.pid} in group ${g}`,
      );
    }
  }
}
