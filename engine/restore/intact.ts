/**
 * The image files must not shrink while the stubs read them: a pread from
 * a truncated file returns short and would leave memory zero-filled. Once
 * every restore program has run, and before anything is released, each
 * image must still be at least as large as the manifest says; a file that
 * is whole then was whole while it was read.
 *
 * @module
 */

import type { Manifest } from "../model.ts";
import { RestoreError } from "../errors.ts";

/** The first image of `manifest` in `dir` smaller than recorded, as an error; undefined if none. */
export function shrunkImage(dir: string, manifest: Manifest): RestoreError | undefined {
  for (const p of manifest.processes) {
    const path = `${dir}/${p.file}`;
    let size = -1;
    try {
      size = Deno.statSync(path).size;
    } catch { /* gone */ }
    if (size < p.size) {
      return new RestoreError(
        `cannot restore: ${path} was truncated during the restore (${
          size < 0 ? "removed" : `${size} bytes`
        }, the manifest says ${p.size})`,
      );
    }
  }
  return undefined;
}
