/**
 * Stress of the pre-copy's write tracking (engine/dump/precopy.ts): the
 * pages are write-protected with PAGEMAP_SCAN (PM_SCAN_WP_MATCHING) and
 * copied while the tree runs, and only those PAGEMAP_SCAN reports written
 * at the dump's freeze are taken again. A write the tracking missed would
 * leave a page of the image older than the memory at that freeze.
 *
 * tests/targets/wp_stress.c has several threads writing random pages all
 * the time (first touches of never-touched pages, writes over the shared
 * zero page and the huge zero page, into THP-backed memory, the same page
 * from two threads) while a reader maps zero pages. At the dump's freeze
 * (its "frozen" event, synchronous, before the thaw) the test reads every
 * present page of the process through /proc/<pid>/mem (only present or
 * swapped pages: a read of an absent one would map a page); after the dump
 * every page of the image must equal it byte for byte, and every page of
 * the region not saved must have been absent or zero. Only the threads'
 * rseq areas may differ (the kernel rewrites them when the dump's injected
 * syscalls return to user mode, after the freeze).
 *
 * `WP_STRESS_ROUNDS` (default 2) dumps as many times; `WP_STRESS_MIB` and
 * `WP_STRESS_THREADS` size the target (default 32 MiB, 3 writers).
 *
 * A second case arms the tracking while a thread reads a file with O_DIRECT
 * into the process's memory (wp_stress "dio"): the kernel writes through
 * pages pinned when the read began, without the fault that clears the
 * protection; the pre-copy must not copy them before that read has landed
 * (engine/dump/precopy.ts, the barrier freeze after arming).
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { readImageFile, readPageRunSync } from "../engine/image/reader.ts";
import { PM, readPagemap } from "../engine/proc/pagemap.ts";
import { readMaps } from "../engine/proc/maps.ts";
import { startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";
import { assertChecksPassed } from "./helpers/checks.ts";

const PAGE = 4096;
const READY = /^ready pid=(\d+) region=0x([0-9a-f]+) pages=(\d+)$/m;

/** The content of every present or swapped page of `pid`, by page address. */
function snapshot(pid: number): Map<number, Uint8Array> {
  const out = new Map<number, Uint8Array>();
  using mem = Deno.openSync(`/proc/${pid}/mem`, { read: true });
  for (const m of readMaps(pid)) {
    if (m.path === "[vsyscall]" || m.path === "[vvar]" || m.path === "[vvar_vclock]") continue;
    const start = Number(m.start), end = Number(m.end);
    const e = readPagemap(pid, start, end);
    for (let i = 0; i < e.length;) {
      if (!(e.hi(i) & (PM.PRESENT | PM.SWAPPED))) {
        i++;
        continue;
      }
      let j = i;
      while (j < e.length && e.hi(j) & (PM.PRESENT | PM.SWAPPED)) j++;
      const buf = new Uint8Array((j - i) * PAGE);
      mem.seekSync(start + i * PAGE, Deno.SeekMode.Start);
      for (let at = 0; at < buf.length;) {
        const n = mem.readSync(buf.subarray(at));
        if (n === null || n === 0) {
          throw new Error(`short read at 0x${(start + i * PAGE).toString(16)}`);
        }
        at += n;
      }
      for (let k = i; k < j; k++) {
        out.set(start + k * PAGE, buf.subarray((k - i) * PAGE, (k - i + 1) * PAGE));
      }
      i = j;
    }
  }
  return out;
}

/** The pages an image saved for `pid`, and its threads' rseq areas. */
interface Saved {
  /** Saved pages by address. */
  pages: Map<number, Uint8Array>;
  /** [address, length] of each thread's rseq area. */
  rseq: [number, number][];
}

/** What the image of `pid` in `dir` saved. */
async function imagePages(dir: string, pid: number): Promise<Saved> {
  const path = `${dir}/${pid}.elf`;
  const info = await readImageFile(path);
  const out = new Map<number, Uint8Array>();
  using f = await Deno.open(path, { read: true });
  for (const m of info.process.mappings) {
    for (const run of m.pages) {
      const bytes = readPageRunSync(f, run);
      const a = Number(BigInt(run.addr));
      for (let k = 0; k * PAGE < run.length; k++) {
        out.set(a + k * PAGE, bytes.subarray(k * PAGE, (k + 1) * PAGE));
      }
    }
  }
  const rseq = info.process.threads.flatMap((t) =>
    t.rseq ? [[Number(BigInt(t.rseq.addr)), t.rseq.len] as [number, number]] : []
  );
  return { pages: out, rseq };
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * The first byte where page `a` of the image differs from the frozen one,
 * or -1. A thread's rseq area is left out: the kernel rewrites it (cpu id,
 * mm_cid) each time the thread returns to user mode, which the dump's
 * injected syscalls make it do after the freeze.
 */
function firstDifference(
  saved: Uint8Array,
  frozen: Uint8Array,
  a: number,
  rseq: [number, number][],
): number {
  for (let i = 0; i < PAGE; i++) {
    if (saved[i] === frozen[i]) continue;
    if (rseq.some(([r, len]) => a + i >= r && a + i < r + len)) continue;
    return i;
  }
  return -1;
}

const ZERO = new Uint8Array(PAGE);

/**
 * Pages where the image differs from the memory at the freeze: each saved
 * page against the frozen one (zero when absent), and each present page of
 * the region that was not saved must be zero.
 */
function differences(
  frozen: Map<number, Uint8Array>,
  saved: Saved,
  region: number,
  pages: number,
): string[] {
  const bad: string[] = [];
  for (const [a, bytes] of saved.pages) {
    const f = frozen.get(a) ?? ZERO;
    const i = firstDifference(bytes, f, a, saved.rseq);
    if (i >= 0) {
      bad.push(`0x${(a + i).toString(16)}: saved differs${frozen.has(a) ? "" : " (absent)"}`);
    }
  }
  for (let p = 0; p < pages; p++) {
    const a = region + p * PAGE;
    const f = frozen.get(a);
    if (f && !saved.pages.has(a) && !same(f, ZERO)) bad.push(`0x${a.toString(16)} not saved`);
  }
  return bad;
}

/** Dumps the running wp_stress `rounds` times and compares each image with the memory at its freeze. */
async function stress(rounds: number, mib: string, threads: string, dio: boolean): Promise<void> {
  const { t, trigger, ready } = await startTriggered("wp_stress", READY, {
    extra: [mib, threads, ...(dio ? ["dio"] : [])],
  });
  const region = parseInt(ready[2], 16), pages = Number(ready[3]);
  let reused = 0;
  for (let r = 0; r < rounds; r++) {
    const dir = await tempImageDir();
    let frozen: Map<number, Uint8Array> | undefined;
    const dump = await checkpoint(t.pid, {
      dir,
      leaveRunning: true,
      precopy: true,
      sync: false,
      onEvent: (e) => {
        if (e.type === "frozen") frozen = snapshot(t.pid);
      },
    });
    assert.ok(frozen, "the memory was read at the freeze");
    const pre = dump.stats.precopy;
    assert.ok(pre && pre.bytes > 0, "the dump pre-copied");
    reused += pre.reusedBytes;
    const bad = differences(frozen, await imagePages(dir, t.pid), region, pages);
    assert.deepEqual(
      bad.slice(0, 10),
      [],
      `round ${r}: ${bad.length} pages of the image differ from the memory at the freeze`,
    );
    await Deno.remove(dir, { recursive: true });
  }
  assert.ok(reused > 0, "some pages were kept from the pre-copy");
  await Deno.writeTextFile(trigger, "");
  const checks = dio ? ["writes", "dio"] : ["writes"];
  assertChecksPassed(t, checks, await t.wait(30000), { what: "the target after the dumps" });
}

Deno.test(
  "pre-copy under random writes from several threads (THP, zero pages, first touches): the image is the memory at the freeze",
  withTargets(() =>
    stress(
      Number(Deno.env.get("WP_STRESS_ROUNDS") ?? 2),
      Deno.env.get("WP_STRESS_MIB") ?? "32",
      Deno.env.get("WP_STRESS_THREADS") ?? "3",
      false,
    )
  ),
);

Deno.test(
  "pre-copy armed while an O_DIRECT read into the process's memory is in flight: the image is the memory at the freeze",
  withTargets(() => stress(Number(Deno.env.get("WP_STRESS_DIO_ROUNDS") ?? 3), "4", "1", true)),
);
