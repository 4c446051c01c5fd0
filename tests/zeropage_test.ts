/**
 * The shared zero page is a hole (engine/proc/pagemap_scan.ts
 * `NOT_ZERO_PAGE`): tests/targets/rt_zeropage.c reads all of a 64 MiB
 * private area (the zero page everywhere) and writes every 64th page; the
 * image holds only the written pages, and after the restore the area's
 * Rss (its smaps entry) is no more than before (the written pages), its
 * contents exact. Through every path that plans pages: a dump that kills
 * (private anonymous, private /dev/zero, the huge zero page; a lazy restore
 * of the first), a dump left running with pre-copy and one through a fork
 * snapshot, a pre-dump chain whose final dump finds pages written since the
 * pre-dump where the zero page was (they must be saved then), and a forked
 * child restored by inheritance whose zero pages lie over its parent's
 * pages (discarded, not stored).
 */

import assert from "node:assert/strict";
import { checkpoint, type CheckpointResult } from "../engine/dump/mod.ts";
import { forkSnapshotStats } from "../engine/dump/fork_snapshot.ts";
import { restore } from "../engine/restore/mod.ts";
import { readImage } from "../engine/inspect.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { dumpKillRestore, startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { adoptPid, type Target, withTargets } from "./helpers/targets.ts";
import { rawSyscall } from "../ffi/libc.ts";
import { SYS } from "../ffi/sysno.ts";

/**
 * Whether this kernel maps the shared zero page on a read fault of private
 * anonymous memory here: four pages read, then their pagemap entries must
 * be present with one frame. (Seen otherwise on one test machine, where
 * every read fault allocated a page of its own: nothing to leave out then.)
 */
function zeroPageOnReadFaults(): boolean {
  const PAGE = 4096, PROT_RW = 3, MAP_PRIVATE_ANON = 0x22;
  const addr = rawSyscall(SYS.mmap, 0, 4 * PAGE, PROT_RW, MAP_PRIVATE_ANON, -1, 0);
  if (addr < 0n) return false;
  try {
    const view = new Deno.UnsafePointerView(Deno.UnsafePointer.create(addr)!);
    for (let i = 0; i < 4; i++) view.getUint8(i * PAGE);
    using f = Deno.openSync("/proc/self/pagemap");
    f.seekSync(Number(addr / BigInt(PAGE)) * 8, Deno.SeekMode.Start);
    const entries = new BigUint64Array(4);
    f.readSync(new Uint8Array(entries.buffer));
    const pfns = [...entries].map((e) => e & ((1n << 55n) - 1n));
    return entries.every((e) => e >> 63n === 1n) && pfns[0] !== 0n &&
      pfns.every((p) => p === pfns[0]);
  } finally {
    rawSyscall(SYS.munmap, addr, 4 * PAGE);
  }
}

const ZERO_PAGE_HERE = zeroPageOnReadFaults();

/** A test of this file: ignored where the kernel maps no zero page on a read fault. */
function zeroPageTest(name: string, fn: () => Promise<void>): void {
  Deno.test({ name, ignore: !ZERO_PAGE_HERE, fn });
}
if (!ZERO_PAGE_HERE) {
  console.log("zeropage_test: this kernel maps no zero page on read faults here");
}

const READY = /^ready pid=(\d+) rss=(\d+)$/m;
const CHECKS = ["rss-before", "rss-after", "contents"];
const AREA = 64 << 20;
/** Bytes written by the target: every 64th page (more: twice as many). */
const WRITTEN = AREA / 64;

/** The page data of the image is about the written pages, not the area. */
function assertSmallImage(r: CheckpointResult, written: number, what: string): void {
  const saved = r.stats.pagesBytes + (r.stats.parentReusedBytes ?? 0);
  assert.ok(
    saved < written + 8 * 1024 * 1024,
    `${what}: ${saved} bytes of pages saved, ${written} written in a ${AREA}-byte area`,
  );
}

/** Kills the original (left running by the dump), restores `dir` with its pid. */
async function killAndRestore(t: Target, dir: string): Promise<void> {
  await t.kill();
  const tree = await restore(dir);
  t.resetAfterRestore();
  for (const pid of tree.pids) if (pid !== t.pid) adoptPid(pid);
  assert.equal(tree.rootPid, t.pid, "restored with another pid");
}

/** Triggers the restored target and asserts its checks passed. */
async function finish(a: { t: Target; trigger: string }, what: string): Promise<void> {
  await Deno.writeTextFile(a.trigger, "");
  const status = await a.t.wait();
  console.log(a.t.output().match(/^info .*$/m)?.[0]);
  assertChecksPassed(a.t, CHECKS, status, { what: `rt_zeropage ${what}` });
}

for (const mode of ["anon", "devzero", "thp"]) {
  zeroPageTest(
    `zero page (${mode}): not saved, restored unpopulated (Rss as before), contents exact`,
    withTargets(async () => {
      const a = await startTriggered("rt_zeropage", READY, { extra: [mode] });
      const { dump } = await dumpKillRestore(a.t);
      // thp: each written 2 MiB piece is a huge page, saved whole (8 of the 32).
      assertSmallImage(dump, mode === "thp" ? AREA / 4 : WRITTEN, mode);
      await finish(a, mode);
    }),
  );
}

zeroPageTest(
  "zero page: a lazy restore leaves the holes unpopulated too",
  withTargets(async () => {
    const a = await startTriggered("rt_zeropage", READY, { extra: ["anon"] });
    const dir = await tempImageDir();
    assertSmallImage(await checkpoint(a.t.pid, { dir }), WRITTEN, "lazy");
    await a.t.wait();
    const tree = await restore(dir, { lazy: true });
    a.t.resetAfterRestore();
    for (const pid of tree.pids) if (pid !== a.t.pid) adoptPid(pid);
    assert.ok(tree.lazy, "the restore is lazy");
    tree.lazy.serve();
    await finish(a, "lazy");
    assert.equal(tree.lazy.failure, undefined);
  }),
);

zeroPageTest(
  "zero page: a dump left running with pre-copy, then through a fork snapshot: not saved",
  withTargets(async () => {
    const a = await startTriggered("rt_zeropage", READY, { extra: ["anon"] });
    const d1 = await tempImageDir();
    const r1 = await checkpoint(a.t.pid, { dir: d1, leaveRunning: true, precopy: true });
    assert.ok(r1.stats.precopy, "pre-copied");
    assertSmallImage(r1, WRITTEN, "pre-copy");
    assert.ok(r1.stats.precopy.bytes < WRITTEN + 8 * 1024 * 1024, "the pre-copy skipped them");
    const made = forkSnapshotStats.made;
    Deno.env.set("CRYO_FORK_SNAPSHOT", "1");
    let r2: CheckpointResult;
    try {
      r2 = await checkpoint(a.t.pid, {
        dir: await tempImageDir(),
        leaveRunning: true,
        precopy: false,
      });
    } finally {
      Deno.env.delete("CRYO_FORK_SNAPSHOT");
    }
    assert.equal(forkSnapshotStats.made, made + 1, "the pages came from a snapshot");
    assertSmallImage(r2, WRITTEN, "fork snapshot");
    await killAndRestore(a.t, d1);
    await finish(a, "pre-copy");
  }),
);

zeroPageTest(
  "zero page: pages written after a pre-dump where the zero page was are saved by the final dump",
  withTargets(async () => {
    const a = await startTriggered("rt_zeropage", READY, { extra: ["anon"] });
    const d1 = await tempImageDir(), d2 = await tempImageDir();
    const r1 = await checkpoint(a.t.pid, { dir: d1, preDump: true });
    assertSmallImage(r1, WRITTEN, "pre-dump");
    await Deno.writeTextFile(`${a.trigger}.more`, "");
    await a.t.waitFor(/^more written/m);
    const r2 = await checkpoint(a.t.pid, { dir: d2, parent: d1 });
    assert.ok((r2.stats.parentReusedBytes ?? 0) > 0, "pages taken from the pre-dump");
    assert.ok(r2.stats.pagesBytes >= WRITTEN, `the written pages read: ${r2.stats.pagesBytes}`);
    assertSmallImage(r2, 2 * WRITTEN, "final dump");
    await a.t.wait();
    const tree = await restore(d2);
    a.t.resetAfterRestore();
    for (const pid of tree.pids) if (pid !== a.t.pid) adoptPid(pid);
    await finish(a, "pre-dump chain");
  }),
);

zeroPageTest(
  "zero page: a child's zero pages over its parent's pages are discarded, not stored (inheritance)",
  withTargets(async () => {
    const a = await startTriggered("rt_zeropage", READY, { extra: ["fork"] });
    const { dir } = await dumpKillRestore(a.t);
    const model = await readImage(dir);
    const kid = model.processes.find((p) => p.pid !== a.t.pid);
    assert.ok(kid, "the child is in the image");
    const m = kid.mappings.find((m) => BigInt(m.end) - BigInt(m.start) === BigInt(AREA));
    assert.ok(m?.inherited, "the child's area is inherited");
    const stored = m.pages.reduce((n, r) => n + r.length, 0);
    assert.equal(
      stored,
      4096,
      `the child stores its written page alone: ${JSON.stringify(m.pages)}`,
    );
    const start = BigInt(m.start);
    const dropped = (m.discard ?? []).map((d) => [Number(BigInt(d.addr) - start) / 4096, d.length]);
    assert.deepEqual(dropped, [[0, 4096], [64, 4096]], "the parent's pages 0 and 64 discarded");
    await Deno.writeTextFile(a.trigger, "");
    const status = await a.t.wait();
    console.log(a.t.output().match(/^info .*$/gm)?.join("\n"));
    assertChecksPassed(a.t, CHECKS, status, { what: "rt_zeropage fork (child)", run: 1 });
    assertChecksPassed(a.t, [...CHECKS, "child-exit"], status, {
      what: "rt_zeropage fork (parent)",
      run: 2,
    });
  }),
);
