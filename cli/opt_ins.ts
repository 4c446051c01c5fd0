/**
 * The opt-in flags shared by `dump` and `restore` (CRIU's names), in a
 * module of their own so that `restore` does not load the dump engine.
 *
 * @module
 */

/** The opt-in flags shared by dump and restore (CRIU's names). */
export const OPT_IN_FLAGS = ["ext-unix-sk", "tcp-established", "shell-job"] as const;

/** The opt-ins given among parsed commander options (camelCase keys). */
export function optInsOf(opts: object): string[] {
  const o = opts as Record<string, unknown>;
  return OPT_IN_FLAGS.filter((f) => o[f.replace(/-(.)/g, (_, c: string) => c.toUpperCase())]);
}
