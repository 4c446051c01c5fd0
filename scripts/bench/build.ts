/**
 * Compiling the benchmark's C programs (scripts/bench/*.c) on demand, cached
 * by content hash in tests/.cache/ next to the test targets.
 *
 * @module
 */

import { createHash } from "node:crypto";

const root = new URL("../../", import.meta.url).pathname;
const cacheDir = `${root}tests/.cache`;

/** Compiles scripts/bench/<name>.c once per content hash; returns the binary's path. */
export async function buildBenchProgram(name: string): Promise<string> {
  const src = `${root}scripts/bench/${name}.c`;
  const text = await Deno.readTextFile(src);
  const flags = ["-O2", "-pthread", "-Wall"];
  const hash = createHash("sha256").update(text).update(flags.join(" ")).digest("hex").slice(0, 16);
  const out = `${cacheDir}/bench-${name}-${hash}`;
  try {
    await Deno.stat(out);
    return out;
  } catch { /* build it */ }
  await Deno.mkdir(cacheDir, { recursive: true });
  const tmp = `${out}.tmp${Deno.pid}`;
  // cc is not traced: Deno.Command is fine here (it runs before any workload starts).
  const r = await new Deno.Command("cc", { args: [...flags, "-o", tmp, src] }).output();
  if (!r.success) throw new Error(`cc ${name}.c failed:\n${new TextDecoder().decode(r.stderr)}`);
  await Deno.rename(tmp, out);
  return out;
}
