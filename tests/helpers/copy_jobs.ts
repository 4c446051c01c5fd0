/**
 * Copy jobs over the test's own memory, for the page copy's lanes
 * (tests/copy_lanes_test.ts, tests/native_lane_test.ts): a patterned
 * buffer, runs of odd lengths crossing block boundaries, and comparisons
 * of two copies' results and files.
 */

import assert from "node:assert/strict";
import * as zlib from "node:zlib";
import type { CopiedRun, CopyJob, CopyResult } from "../../engine/dump/precopy_copy.ts";
import type { Vma } from "../../engine/dump/vmas.ts";
import { CRC_BLOCK } from "../../engine/dump/memory.ts";
import { pageAlignedBuffer } from "../../ffi/page_file.ts";
import { addressOf } from "../../ffi/libc.ts";

/** Page size. */
export const PAGE = 4096;
/** One MiB. */
export const MiB = 1 << 20;

/** `mib` MiB of this process's memory filled with a pattern; its address. */
export function patterned(mib: number): { buf: Uint8Array; addr: bigint } {
  const buf = pageAlignedBuffer(mib * MiB);
  for (let i = 0; i < buf.length; i += 8) buf[i] = (i * 2654435761) >>> 24;
  for (let i = 0; i < buf.length; i += PAGE) buf[i + 1] = i / PAGE;
  return { buf, addr: addressOf(buf) };
}

/** Runs (page offsets, page counts) of odd lengths, crossing 1 MiB boundaries. */
export const RUNS: [number, number][] = [[0, 3], [5, 300], [400, 1], [402, 517], [1024, 2000]];

/** A job copying {@link RUNS} (shifted by `shift` pages) of 16 MiB at `addr` into `path`. */
export function jobOf(addr: bigint, path: string, pagesStart: number, shift: number): CopyJob {
  const vma = { start: addr, end: addr + 16n * BigInt(MiB), perms: "rw-p" } as Vma;
  return {
    pid: Deno.pid,
    path,
    pagesStart,
    planned: [{
      vma,
      runs: RUNS.map(([p, n]) => ({ addr: addr + BigInt((p + shift) * PAGE), length: n * PAGE })),
    }],
  };
}

/** Copied runs with neighbours (in memory and in the file) merged. */
export function coalesced(runs: CopiedRun[]): CopiedRun[] {
  const out: CopiedRun[] = [];
  for (const r of runs) {
    const l = out[out.length - 1];
    if (l && l.addr + l.length === r.addr && l.fileOffset + l.length === r.fileOffset) {
      l.length += r.length;
    } else out.push({ ...r });
  }
  return out;
}

/** CRC of each block of [start, end) of the file. */
export function blocksOf(path: string, start: number, end: number): number[] {
  const data = Deno.readFileSync(path).subarray(start, end);
  const out: number[] = [];
  for (let o = 0; o < data.length; o += CRC_BLOCK) {
    out.push(zlib.crc32(data.subarray(o, o + CRC_BLOCK)));
  }
  return out;
}

/** Asserts two copies' results are the same (runs compared coalesced). */
export function assertSameResult(got: CopyResult, want: CopyResult, what: string): void {
  assert.equal(got.pagesEnd, want.pagesEnd, `${what}: end`);
  assert.equal(got.bytes, want.bytes, `${what}: bytes`);
  assert.deepEqual(got.blockCrcs, want.blockCrcs, `${what}: block CRCs`);
  assert.deepEqual(coalesced(got.copied), coalesced(want.copied), `${what}: runs`);
}

/** Asserts the files at `a` and `b` hold the same bytes. */
export function assertSameFiles(a: string, b: string, what: string): void {
  const one = Deno.readFileSync(a);
  const two = Deno.readFileSync(b);
  assert.equal(two.length, one.length, `${what}: size`);
  assert.ok(one.every((x, i) => x === two[i]), `${what}: same bytes`);
}
