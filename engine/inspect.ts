/**
 * Reading an image for humans and programs: the typed model that
 * `show --json` prints and `readImage()` returns.
 *
 * @module
 */

import { resolve } from "node:path";
import type { Manifest, ProcessImage } from "./model.ts";
import { readImageFile } from "./image/reader.ts";
import { verifyImageDir } from "./image/manifest.ts";
import { ImageFormatError } from "./image/errors.ts";

/** A checkpoint as a typed model. */
export interface ImageModel {
  /** Absolute path that was read (a directory or one .elf file). */
  path: string;
  /** The manifest (absent when a single .elf file was read). */
  manifest?: Manifest;
  /** Every process, root first. */
  processes: ProcessImage[];
}

/**
 * Reads an image directory (or one `<pid>.elf`) into its typed model,
 * validating structure and sizes (checksums with `verifyChecksums`).
 *
 * ```ts
 * const model = await readImage("/tmp/ck");
 * console.log(model.processes[0].threads.length);
 * ```
 */
export async function readImage(
  path: string,
  opts: { verifyChecksums?: boolean } = {},
): Promise<ImageModel> {
  const abs = resolve(path);
  const st = await Deno.stat(abs).catch((e) => {
    if (e instanceof Deno.errors.NotFound) throw new ImageFormatError(abs, "no such image");
    throw e;
  });
  if (st.isDirectory) {
    const { manifest, images } = await verifyImageDir(abs, {
      checksums: opts.verifyChecksums ?? false,
    });
    return { path: abs, manifest, processes: images.map((i) => i.process) };
  }
  const info = await readImageFile(abs);
  return { path: abs, processes: [info.process] };
}
