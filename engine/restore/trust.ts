/**
 * Who may have written an image directory, and whose credentials a restore
 * may give: restore execs the images and recreates processes with the
 * credentials they record, so an image another user could have changed is
 * a way to run code as root.
 *
 * - A directory named like an unfinished dump (`.<name>.cryo-partial-<pid>`)
 *   is never restored.
 * - Run by root, restore refuses an image directory (or a file in it) owned
 *   by another user or writable by group or others, unless the caller
 *   trusts the owner (`--trust-image-owner`).
 * - Run by another user, restore only recreates processes with that user's
 *   own uids and gids (and cryo needs CAP_SYS_PTRACE and
 *   CAP_CHECKPOINT_RESTORE anyway: checks.ts).
 *
 * @module
 */

import { basename } from "../path.ts";
import type { ProcessImage } from "../model.ts";
import { RestoreError } from "../errors.ts";
import { PARTIAL_RE } from "../dump/partial.ts";
import { setgroupsDenied } from "../task/userns.ts";

/** The effective uid and the gids of cryo itself, from /proc/self/status. */
function selfIds(): { euid: number; uids: number[]; gids: number[]; groups: number[] } {
  const status = Deno.readTextFileSync("/proc/self/status");
  const ids = (key: string) =>
    (status.match(new RegExp(`^${key}:[ \\t]*(.*)$`, "m"))?.[1] ?? "").trim().split(/\s+/)
      .filter(Boolean).map(Number);
  const uids = ids("Uid");
  return { euid: uids[1], uids, gids: [...ids("Gid"), ...ids("Groups")], groups: ids("Groups") };
}

function problemOf(st: Deno.FileInfo): string | undefined {
  if (st.uid !== 0) return `owned by uid ${st.uid}`;
  if (((st.mode ?? 0) & 0o022) !== 0) {
    return `writable by ${((st.mode ?? 0) & 0o002) ? "others" : "its group"} (mode ${
      ((st.mode ?? 0) & 0o7777).toString(8).padStart(4, "0")
    })`;
  }
  return undefined;
}

/**
 * Refuses to restore from `dir` (absolute) when it is a partial dump, or
 * (run as root, without `trustOwner`) when it or a file in it is owned by
 * another user or writable by group or others.
 */
export function checkImageDirTrust(dir: string, trustOwner = false): void {
  if (PARTIAL_RE.test(basename(dir))) {
    throw new RestoreError(
      `cannot restore: ${dir} is the partial directory of an unfinished dump, not an image`,
    );
  }
  const { euid } = selfIds();
  let st: Deno.FileInfo;
  try {
    st = Deno.statSync(dir);
    Deno.readDirSync(dir)[Symbol.iterator]().next();
  } catch (e) {
    if (e instanceof Deno.errors.PermissionDenied) {
      throw new RestoreError(
        `cannot restore: ${dir} is not readable by uid ${euid} (images are private to their owner)`,
      );
    }
    if (e instanceof Deno.errors.NotFound) {
      throw new RestoreError(`cannot restore: there is no image directory ${dir}`);
    }
    if (e instanceof Deno.errors.NotADirectory) {
      throw new RestoreError(
        `cannot restore: ${dir} is not a directory (an image is the directory a dump wrote)`,
      );
    }
    throw e;
  }
  if (euid !== 0 || trustOwner) return;
  const trust = "; restore it only if you trust that user (--trust-image-owner)";
  const dirProblem = problemOf(st);
  if (dirProblem) {
    throw new RestoreError(`cannot restore: image directory ${dir} is ${dirProblem}${trust}`);
  }
  for (const e of Deno.readDirSync(dir)) {
    const fst = Deno.lstatSync(`${dir}/${e.name}`);
    // A link's own mode is 0777: say what it is (its target may be anyone's file).
    const p = fst.isSymlink
      ? `a symbolic link to ${Deno.readLinkSync(`${dir}/${e.name}`)}, not a file of the dump`
      : problemOf(fst);
    if (p) throw new RestoreError(`cannot restore: ${dir}/${e.name} is ${p}${trust}`);
  }
}

/**
 * Run by a user other than root: refuses processes whose recorded uids,
 * gids or supplementary groups are not that user's own.
 */
export function checkOwnCredentials(processes: readonly ProcessImage[]): void {
  const { euid, uids, gids, groups } = selfIds();
  if (euid === 0) return;
  for (const p of processes) {
    const c = p.creds;
    const foreignUid = c.uid.find((u) => !uids.includes(u));
    const foreignGid = [...c.gid, ...c.groups].find((g) => !gids.includes(g));
    if (foreignUid !== undefined || foreignGid !== undefined) {
      const what = foreignUid !== undefined ? `uid ${foreignUid}` : `gid ${foreignGid}`;
      throw new RestoreError(
        `cannot restore: process ${p.pid} ran as ${what}; uid ${euid} may restore only processes with its own credentials`,
      );
    }
    const same = (a: number[], b: number[]) =>
      a.length === b.length && a.every((g, i) => g === b[i]);
    if (setgroupsDenied() && !same([...c.groups].sort(), [...groups].sort())) {
      throw new RestoreError(
        `cannot restore: process ${p.pid} had supplementary groups [${c.groups.join(" ")}], not [${
          groups.join(" ")
        }]: a rootless namespace cannot change them (setgroups is denied)`,
      );
    }
  }
}
