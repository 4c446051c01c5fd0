/**
 * The image fuzzer's mutations: seeded and reproducible. Each case copies
 * a good image directory and damages it one way — random bytes, a
 * truncated file, or a structure-aware change to the manifest or to a
 * process description (the NT_CRYO_PROCESS note, rewritten in place) with
 * every checksum recomputed, so that only validation stands in the way.
 *
 * @module
 */

import { readImageFile } from "../../engine/image/reader.ts";
import { checksumFile } from "../../engine/image/writer.ts";
import { NT_CRYO_MAPPINGS, NT_CRYO_PROCESS } from "../../engine/image/notes.ts";

/** A small seeded PRNG (mulberry32). */
export class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0;
  }
  /** A float in [0, 1). */
  next(): number {
    let t = (this.#s += 0x6d2b79f5);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  /** One element of `xs`. */
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }
}

/** Values a hostile image might hold. */
const HOSTILE: unknown[] = [
  0,
  -1,
  1,
  2,
  4194305,
  2 ** 31,
  2 ** 53,
  1.5,
  NaN,
  "",
  "..",
  "../../etc/passwd",
  "/proc/self/mem",
  "a\u0000b",
  "0x0",
  "0xffffffffffffffff",
  "0x7ffffffff000",
  "0x1000",
  "nothex",
  null,
  true,
  [],
  {},
  [0],
  "x".repeat(5000),
];

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Every path (list of keys) to a value inside `x`. */
function paths(x: Json, prefix: (string | number)[] = [], out: (string | number)[][] = []) {
  out.push(prefix);
  if (Array.isArray(x)) x.forEach((v, i) => paths(v, [...prefix, i], out));
  else if (x && typeof x === "object") {
    for (const [k, v] of Object.entries(x)) paths(v, [...prefix, k], out);
  }
  return out;
}

/** Changes one value of a JSON document: replace it, delete it, or duplicate an array item. */
export function mutateJson(doc: Json, rng: Rng): { doc: Json; what: string } {
  const all = paths(doc).filter((p) => p.length > 0);
  const path = rng.pick(all);
  const copy = structuredClone(doc) as Json;
  let parent = copy as Record<string | number, Json>;
  for (const k of path.slice(0, -1)) parent = parent[k] as Record<string | number, Json>;
  const key = path[path.length - 1];
  const where = path.join(".");
  const choice = rng.int(10);
  if (choice === 0 && !Array.isArray(parent)) {
    delete parent[key];
    return { doc: copy, what: `delete ${where}` };
  }
  if (choice === 1 && Array.isArray(parent)) {
    (parent as Json[]).splice(Number(key), 0, structuredClone(parent[key]));
    return { doc: copy, what: `duplicate ${where}` };
  }
  const value = rng.pick(HOSTILE) as Json;
  parent[key] = value;
  return { doc: copy, what: `${where} = ${JSON.stringify(value)?.slice(0, 40)}` };
}

/** The process note's place in an image file. */
async function processNote(path: string): Promise<{ offset: number; size: number; json: Json }> {
  const info = await readImageFile(path);
  const note = info.notes.find((n) => n.owner === "CRYO" && n.type === NT_CRYO_PROCESS)!;
  return {
    offset: note.descOffset,
    size: note.size,
    json: JSON.parse(new TextDecoder().decode(note.desc)),
  };
}

/** Rewrites the manifest's checksum and size of `file` after it changed. */
async function refreshManifest(dir: string, file: string): Promise<void> {
  const m = JSON.parse(await Deno.readTextFile(`${dir}/manifest.json`));
  for (const p of m.processes ?? []) {
    if (p.file === file) {
      p.checksum = await checksumFile(`${dir}/${file}`);
      p.size = (await Deno.stat(`${dir}/${file}`)).size;
    }
  }
  await Deno.writeTextFile(`${dir}/manifest.json`, JSON.stringify(m, null, 2));
}

/** The kinds of damage. */
export const MUTATIONS = ["bytes", "truncate", "manifest", "process", "mappings"] as const;

/**
 * Damages the image directory `dir` (a copy) in place with one mutation
 * chosen by `rng`; returns what was done, or null when this case could not
 * be applied (e.g. a process description that would grow).
 */
export async function mutateImage(dir: string, rng: Rng): Promise<string | null> {
  const kind = rng.pick(MUTATIONS);
  const files = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
  const elfs = files.filter((f) => f.endsWith(".elf"));
  switch (kind) {
    case "bytes": {
      const file = rng.pick(files);
      const bytes = await Deno.readFile(`${dir}/${file}`);
      const n = 1 + rng.int(8);
      // Headers and notes matter most: aim at the first 8 KiB half of the time.
      for (let i = 0; i < n; i++) {
        const at = rng.int(2) === 0 ? rng.int(Math.min(8192, bytes.length)) : rng.int(bytes.length);
        bytes[at] ^= 1 << rng.int(8);
      }
      await Deno.writeFile(`${dir}/${file}`, bytes);
      return `flip ${n} bits of ${file}`;
    }
    case "truncate": {
      const file = rng.pick(files);
      const size = (await Deno.stat(`${dir}/${file}`)).size;
      const to = rng.int(size);
      await Deno.truncate(`${dir}/${file}`, to);
      return `truncate ${file} to ${to} of ${size}`;
    }
    case "manifest": {
      const doc = JSON.parse(await Deno.readTextFile(`${dir}/manifest.json`)) as Json;
      const { doc: next, what } = mutateJson(doc, rng);
      await Deno.writeTextFile(`${dir}/manifest.json`, JSON.stringify(next));
      return `manifest: ${what}`;
    }
    case "process": {
      const file = rng.pick(elfs);
      const note = await processNote(`${dir}/${file}`);
      const { doc, what } = mutateJson(note.json, rng);
      const text = new TextEncoder().encode(JSON.stringify(doc));
      if (text.length > note.size) return null;
      const desc = new Uint8Array(note.size).fill(0x20); // JSON allows trailing blanks
      desc.set(text);
      const f = await Deno.open(`${dir}/${file}`, { write: true });
      try {
        await f.seek(note.offset, Deno.SeekMode.Start);
        for (let w = 0; w < desc.length;) w += await f.write(desc.subarray(w));
      } finally {
        f.close();
      }
      await refreshManifest(dir, file);
      return `${file} process: ${what}`;
    }
    case "mappings": {
      // Bits of the NT_CRYO_MAPPINGS rows flipped, the checksum made to match: the reader's
      // checks, not the checksum, must refuse what is wrong.
      const file = rng.pick(elfs);
      const info = await readImageFile(`${dir}/${file}`);
      const note = info.notes.find((n) => n.owner === "CRYO" && n.type === NT_CRYO_MAPPINGS);
      if (!note) return null;
      const bytes = await Deno.readFile(`${dir}/${file}`);
      const n = 1 + rng.int(4);
      for (let i = 0; i < n; i++) {
        // The header and the rows' narrow columns half of the time.
        const span = rng.int(2) === 0 ? Math.min(note.size, 64 + rng.int(512)) : note.size;
        bytes[note.descOffset + rng.int(span)] ^= 1 << rng.int(8);
      }
      await Deno.writeFile(`${dir}/${file}`, bytes);
      await refreshManifest(dir, file);
      return `${file} mappings: flip ${n} bits`;
    }
  }
}

/** Copies image directory `from` to `to` (files only). */
export async function copyImage(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for (const e of Deno.readDirSync(from)) {
    if (e.isFile) await Deno.copyFile(`${from}/${e.name}`, `${to}/${e.name}`);
  }
}
