/**
 * A lazy restore with checksums on checks the page data block by block
 * (manifest `pageBlocks`, engine/image/page_blocks.ts): before the tree
 * runs only the image's head and tail and the blocks read eagerly
 * (engine/restore/verify_blocks.ts), each other block when the server
 * first reads it (engine/memory/lazy_blocks.ts). tests/targets/rt_lazy.c
 * checks its whole memory:
 *
 * - a dump records the block table; a lazy round trip passes its checks;
 * - a --leave-running dump (pre-copy, then the rest while frozen) records
 *   the right CRC for every block, the one where the pre-copy ends too;
 * - a byte flipped in a block of the big region (read only after the
 *   release): the server kills the tree with an error naming the image
 *   and the block; the target never prints a verdict;
 * - a byte flipped in the head (before the page data): refused before
 *   anything runs;
 * - an image without the field (removed from the manifest): restored
 *   lazily with the whole-file check, and the same flipped page byte is
 *   then refused before anything runs;
 * - a block table of the wrong length (or not base64) is refused by the
 *   image validation.
 */

import assert from "node:assert/strict";
import * as zlib from "node:zlib";
import { checkpoint } from "../engine/dump/mod.ts";
import { restore } from "../engine/restore/mod.ts";
import { verifyImageDir } from "../engine/image/manifest.ts";
import { readImageFile } from "../engine/image/reader.ts";
import { decodeBlockCrcs, encodeBlockCrcs } from "../engine/image/page_blocks.ts";
import { lazyRegions } from "../engine/memory/lazy.ts";
import type { Manifest } from "../engine/model.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { adoptPid, withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+) child=(\d+)$/m;
const CHECKS = ["dropped", "moved", "region", "rewrite", "heap"];

/** Dumps rt_lazy (8 MiB, killed) and writes its trigger: the restored target checks at once. */
async function dumped() {
  const { t, trigger } = await startTriggered("rt_lazy", READY, { extra: ["8", "orphan"] });
  const dir = await tempImageDir();
  await checkpoint(t.pid, { dir });
  await t.wait();
  await Deno.writeTextFile(trigger, "");
  const manifest = JSON.parse(await Deno.readTextFile(`${dir}/manifest.json`)) as Manifest;
  const entry = manifest.processes.find((p) => p.pid === t.pid)!;
  return { t, dir, manifest, entry, path: `${dir}/${entry.file}` };
}

/** File offset of a page in the middle of the largest lazy mapping (read only after the release). */
async function midRegionOffset(path: string): Promise<number> {
  const proc = (await readImageFile(path)).process;
  const big =
    lazyRegions(proc).sort((a, b) => Number(b.end - b.start) - Number(a.end - a.start))[0];
  const run = big.runs[Math.floor(big.runs.length / 2)];
  return run.fileOffset + 100;
}

async function flipByte(path: string, at: number): Promise<void> {
  using f = await Deno.open(path, { read: true, write: true });
  const b = new Uint8Array(1);
  await f.seek(at, Deno.SeekMode.Start);
  await f.read(b);
  b[0] ^= 0x5a;
  await f.seek(at, Deno.SeekMode.Start);
  await f.write(b);
}

function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) [ZX] /.test(Deno.readTextFileSync(`/proc/${pid}/stat`));
  } catch {
    return false;
  }
}

Deno.test(
  "restore --lazy with checksums: the block table is recorded and the round trip passes",
  withTargets(async () => {
    const { t, dir, entry, path } = await dumped();
    const pb = entry.pageBlocks;
    assert.ok(pb, "the dump records pageBlocks");
    const info = await readImageFile(path);
    assert.deepEqual([pb.offset, pb.length], [info.pagesSection.offset, info.pagesSection.size]);
    assert.equal(pb.size, 1 << 20);
    const crcs = decodeBlockCrcs(pb.crcs);
    assert.ok(typeof crcs !== "string" && crcs.length === Math.ceil(pb.length / pb.size));
    const tree = await restore(dir, { lazy: true, verifyChecksums: true });
    t.resetAfterRestore();
    assert.ok(tree.lazy, "lazy");
    tree.lazy.serve();
    assert.equal(tree.lazy.failure, undefined);
    assertChecksPassed(t, CHECKS, await t.wait(60000), { what: "lazily restored, by blocks" });
  }),
);

Deno.test(
  "a --leave-running dump (pages pre-copied, then the rest) records a correct block table",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_lazy", READY, { extra: ["8", "orphan"] });
    const dir = await tempImageDir();
    const dump = await checkpoint(t.pid, { dir, leaveRunning: true, precopy: true });
    assert.ok(dump.stats.precopy, "pre-copied");
    t.signal(9);
    await t.wait();
    await Deno.writeTextFile(trigger, "");
    const manifest = JSON.parse(await Deno.readTextFile(`${dir}/manifest.json`)) as Manifest;
    assert.ok(manifest.processes.every((p) => p.pageBlocks), "pageBlocks recorded");
    // Every block as the file holds it now (the tie to the whole-file checksum is checked by restore).
    for (const p of manifest.processes) {
      const crcs = decodeBlockCrcs(p.pageBlocks!.crcs) as Uint32Array;
      const data = await Deno.readFile(`${dir}/${p.file}`);
      const { offset, length, size } = p.pageBlocks!;
      for (let b = 0; b < crcs.length; b++) {
        const at = offset + b * size;
        const got = zlib.crc32(data.subarray(at, Math.min(at + size, offset + length))) >>> 0;
        assert.equal(got, crcs[b], `block ${b} of ${p.file}`);
      }
    }
    const tree = await restore(dir, { lazy: true, verifyChecksums: true });
    t.resetAfterRestore();
    assert.ok(tree.lazy, "lazy");
    tree.lazy.serve();
    assert.equal(tree.lazy.failure, undefined);
    assertChecksPassed(t, CHECKS, await t.wait(60000), { what: "pre-copied, by blocks" });
  }),
);

Deno.test(
  "restore --lazy: a damaged block read after the release kills the tree, naming image and block",
  withTargets(async () => {
    const { t, dir, entry, path } = await dumped();
    const at = await midRegionOffset(path);
    const block = Math.floor((at - entry.pageBlocks!.offset) / entry.pageBlocks!.size);
    await flipByte(path, at);
    const tree = await restore(dir, { lazy: true, verifyChecksums: true });
    t.resetAfterRestore();
    for (const pid of tree.pids) if (pid !== t.pid) adoptPid(pid);
    assert.ok(tree.lazy, "lazy");
    tree.lazy.serve();
    const failure = tree.lazy.failure ?? "";
    assert.match(failure, new RegExp(`image ${path}: page data block ${block} `), failure);
    const st = await t.wait(60000);
    assert.deepEqual([st.kind, st.kind === "signaled" ? st.signal : -1], ["signaled", 9]);
    assert.doesNotMatch(t.output(), /^(PASS|FAIL)$|^check region ok/m, t.output());
  }),
);

Deno.test(
  "restore --lazy: a damaged head is refused before anything runs",
  withTargets(async () => {
    const { t, dir, entry } = await dumped();
    await flipByte(`${dir}/${entry.file}`, entry.pageBlocks!.offset - 1);
    await assert.rejects(
      restore(dir, { lazy: true, verifyChecksums: true }),
      /checksum crc32:[0-9a-f]{8} \(from its head, tail and pageBlocks\) differs/,
    );
    assert.ok(!alive(t.pid), "nothing of the tree is left");
    assert.doesNotMatch(t.output(), /^resumed/m);
  }),
);

Deno.test(
  "restore --lazy of an image without pageBlocks: whole-file check as before",
  withTargets(async () => {
    const { t, dir, manifest, path } = await dumped();
    for (const p of manifest.processes) delete p.pageBlocks;
    await Deno.writeTextFile(`${dir}/manifest.json`, JSON.stringify(manifest));
    const copy = `${dir}.damaged`;
    await Deno.mkdir(copy);
    for (const e of Deno.readDirSync(dir)) {
      await Deno.copyFile(`${dir}/${e.name}`, `${copy}/${e.name}`);
    }
    try {
      // The same page byte flipped: without a block table, refused before anything runs.
      const damaged = `${copy}/${path.slice(dir.length + 1)}`;
      await flipByte(damaged, await midRegionOffset(damaged));
      await assert.rejects(
        restore(copy, { lazy: true, verifyChecksums: true }),
        /checksum crc32:[0-9a-f]{8} differs from the manifest's/,
      );
      assert.ok(!alive(t.pid), "nothing of the tree is left");
      const tree = await restore(dir, { lazy: true, verifyChecksums: true });
      t.resetAfterRestore();
      assert.ok(tree.lazy, "lazy");
      tree.lazy.serve();
      assert.equal(tree.lazy.failure, undefined);
      assertChecksPassed(t, CHECKS, await t.wait(60000), { what: "without pageBlocks" });
    } finally {
      await Deno.remove(copy, { recursive: true });
    }
  }),
);

Deno.test(
  "image validation refuses a block table of the wrong length or not base64",
  withTargets(async () => {
    const { dir, manifest, entry } = await dumped();
    const crcs = decodeBlockCrcs(entry.pageBlocks!.crcs) as Uint32Array;
    const bad = async (pageBlocks: unknown, want: RegExp) => {
      const m = structuredClone(manifest);
      m.processes.find((p) => p.pid === entry.pid)!.pageBlocks = pageBlocks as never;
      await Deno.writeTextFile(`${dir}/manifest.json`, JSON.stringify(m));
      await assert.rejects(verifyImageDir(dir, { checksums: false }), want);
    };
    const pb = entry.pageBlocks!;
    await bad({ ...pb, crcs: encodeBlockCrcs(crcs.subarray(1)) }, /pageBlocks hold \d+ checksums/);
    await bad({ ...pb, crcs: encodeBlockCrcs([...crcs, 7]) }, /pageBlocks hold \d+ checksums/);
    await bad({ ...pb, crcs: "!!" }, /not base64/);
    await bad({ ...pb, crcs: pb.crcs.slice(0, -2) }, /pageBlocks/);
    await bad({ ...pb, length: pb.length - 4096 }, /pageBlocks cover/);
    await bad({ ...pb, size: 1000 }, /block size 1000/);
    await bad({ ...pb, size: "x" }, /pageBlocks/);
  }),
);
