/**
 * The one error type of the image layer: a corrupt, truncated or
 * incompatible image file.
 *
 * @module
 */

/** A checkpoint image that cannot be read: bad magic, truncated, wrong version, bad note... */
export class ImageFormatError extends Error {
  /** The file that failed (may be empty when decoding bytes not read from a file). */
  readonly path: string;
  /** One-line reason, without the path. */
  readonly reason: string;

  constructor(path: string, reason: string) {
    super(path ? `${path}: ${reason}` : reason);
    this.name = "ImageFormatError";
    this.path = path;
    this.reason = reason;
  }
}
