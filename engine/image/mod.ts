/**
 * The cryo image format: ELF writer and reader for checkpoint images, the
 * standard core notes, the image directory manifest and `export-core`.
 * docs/IMAGE-FORMAT.md describes the format byte by byte.
 *
 * @module
 */

export { ImageFormatError } from "./errors.ts";
export * from "./elf.ts";
export * from "./notes.ts";
export {
  BOOTSTRAP_FILE_OFFSET,
  checksumFile,
  type FinishOptions,
  IMAGE_SECTIONS,
  type ImageSummary,
  ImageWriter,
  type ImageWriterOptions,
} from "./writer.ts";
export {
  type ImageInfo,
  type ImageNote,
  type ImageSection,
  processImageShapeError,
  readImageFile,
  readPageRun,
  readPageRunSync,
} from "./reader.ts";
export {
  type CoreSummary,
  exportCore,
  exportCoreFromDir,
  isCoreMapping,
  permsToFlags,
  unsavedRanges,
} from "./core.ts";
export {
  imageFileName,
  MANIFEST_FILE,
  manifestShapeError,
  readManifest,
  type VerifiedImageDir,
  verifyImageDir,
  type VerifyOptions,
  writeManifest,
} from "./manifest.ts";
