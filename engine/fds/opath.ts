/**
 * O_PATH fds of files no plain open reaches: a symbolic link itself
 * (opened with O_NOFOLLOW), a socket's file, a FIFO (an O_PATH fd of one
 * holds no pipe): classified as kind "path" at dump. Every O_PATH fd is
 * reopened by its path with its flags (engine/fds/mod.ts `planOne`); the
 * restore's pre-flight checks that the path still names the same file
 * (engine/restore/checks.ts, by lstat: the link itself). The file of a
 * socket bound in the tree is refused (`fd.path-tree-socket`): the restore
 * binds that socket again, which makes a new file, and the fd would name
 * the stale one or the new one depending on the order of the two.
 *
 * @module
 */

import type { ProcessImage } from "../model.ts";
import type { Refusals } from "../support.ts";
import { socketFilePaths } from "./unix.ts";

/** Dump: refuses the O_PATH fds of the files of sockets bound in the tree. */
export function refuseTreeSocketPaths(images: readonly ProcessImage[], refusals: Refusals): void {
  const bound = new Set(images.flatMap((p) => p.fds.flatMap(socketFilePaths)));
  if (!bound.size) return;
  for (const p of images) {
    for (const f of p.fds) {
      if (f.kind !== "path" || f.excluded || !bound.has(f.target)) continue;
      refusals.use("fd.path-tree-socket", `process ${p.pid} fd ${f.fd} (${f.target})`);
    }
  }
}
