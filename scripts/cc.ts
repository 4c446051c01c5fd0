/**
 * Compiling the C programs of the tests and the benchmark on demand, cached
 * by content hash (source, extra inputs such as headers, flags) in
 * tests/.cache/. Development tooling only: cryo itself needs no compiler.
 *
 * @module
 */

import { createHash } from "node:crypto";

const root = new URL("../", import.meta.url).pathname;
const cacheDir = `${root}tests/.cache`;

/**
 * Compiles `src` with `cc <flags>` unless a binary for the same source,
 * `inputs` (files whose contents also matter, e.g. included headers) and
 * flags is cached; returns the binary's path (`<cache>/<prefix>-<hash>`).
 */
export async function compileCached(
  src: string,
  flags: readonly string[],
  prefix: string,
  inputs: readonly string[] = [],
): Promise<string> {
  const key = JSON.stringify([src, flags, prefix, inputs]);
  // Concurrent requests for one binary share one compile.
  let pending = building.get(key);
  if (!pending) {
    pending = compile(src, flags, prefix, inputs).finally(() => building.delete(key));
    building.set(key, pending);
  }
  return await pending;
}

const building = new Map<string, Promise<string>>();

async function compile(
  src: string,
  flags: readonly string[],
  prefix: string,
  inputs: readonly string[],
): Promise<string> {
  const hash = createHash("sha256");
  for (const file of [src, ...inputs]) hash.update(await Deno.readTextFile(file)).update("\0");
  const out = `${cacheDir}/${prefix}-${hash.update(flags.join(" ")).digest("hex").slice(0, 16)}`;
  try {
    await Deno.stat(out);
    return out;
  } catch { /* build it */ }
  await Deno.mkdir(cacheDir, { recursive: true });
  const tmp = `${out}.tmp${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  // cc is not traced: Deno.Command is fine for it.
  const r = await new Deno.Command("cc", { args: [...flags, "-o", tmp, src] }).output();
  if (!r.success) throw new Error(`cc ${src} failed:\n${new TextDecoder().decode(r.stderr)}`);
  await Deno.rename(tmp, out);
  return out;
}
