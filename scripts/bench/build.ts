/**
 * Compiling the benchmark's C programs (scripts/bench/*.c) on demand, cached
 * by content hash in tests/.cache/ next to the test targets.
 *
 * @module
 */

import { compileCached } from "../cc.ts";

const root = new URL("../../", import.meta.url).pathname;

/** Compiles scripts/bench/<name>.c once per content hash; returns the binary's path. */
export function buildBenchProgram(name: string): Promise<string> {
  return compileCached(
    `${root}scripts/bench/${name}.c`,
    ["-O2", "-pthread", "-Wall"],
    `bench-${name}`,
  );
}
