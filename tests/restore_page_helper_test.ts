/**
 * The page helper thread of a restore (engine/restore/page_loads.ts): a
 * mapping with 2 MiB of pages or more is loaded by two threads.
 * tests/targets/rt_pages.c has a read-write region, a region made
 * read-only after it was filled, and a sparse reservation, all above that
 * size; after the restore it checks every page, the zeros between the
 * touched parts, the read-only protection and that it has one thread.
 * Also: the same restore while the helper's tid is held by another
 * process (tests/targets/hold_tid.c), where clone3 fails and the main
 * thread loads every page itself; cryo SIGKILLed while the helper runs
 * (nothing is left, neither the process nor its helper, and the image
 * then restores); a byte of the helper's half corrupted (the restore is
 * refused by its checksum, nothing is left); and the pure parts (the split, the choice of the tid).
 */

import assert from "node:assert/strict";
import type { ProcessImage } from "../engine/model.ts";
import { planRestore, restore } from "../engine/restore/mod.ts";
import { pageHelperTid, splitPieces, uffdEligible } from "../engine/restore/page_loads.ts";
import type { Mapping } from "../engine/model.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { dumpKillRestore, startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { adoptPid, startTarget, withTargets } from "./helpers/targets.ts";
import { checkpoint } from "../engine/dump/mod.ts";
import { __WALL, waitPid, WNOHANG } from "../ffi/wait.ts";
import { startPaused } from "./helpers/kill_anywhere.ts";
import { SYS } from "../ffi/sysno.ts";
import { readImageFile } from "../engine/image/reader.ts";
import { ImageFormatError } from "../engine/image/errors.ts";

const CHECKS = [
  "rw-region",
  "ro-region",
  "sparse-touched",
  "sparse-untouched-zero",
  "one-thread",
  "ro-region-perms",
];
const READY = /^ready pid=(\d+)$/m;
/** _IOWR(0xAA, 0x03, struct uffdio_copy). */
const UFFDIO_COPY = 0xc028aa03n;

/** A single-threaded process image with just what {@link pageHelperTid} reads. */
function imageOf(pid: number, tids: number[] = [pid]): ProcessImage {
  return { pid, threads: tids.map((tid) => ({ tid })) } as unknown as ProcessImage;
}

Deno.test("the pages are split in two halves of the same size, at a page boundary", () => {
  const MiB = 1 << 20;
  const [a, b] = splitPieces([
    { addr: 0x10000000, length: 3 * MiB, fileOffset: 0x1000 },
    { addr: 0x20000000, length: MiB + 8192, fileOffset: 0x1000 + 3 * MiB },
  ]);
  const bytes = (l: { length: number }[]) => l.reduce((n, p) => n + p.length, 0);
  assert.equal(bytes(a) + bytes(b), 4 * MiB + 8192);
  assert.equal(bytes(a), 2 * MiB + 4096);
  assert.deepEqual(b[0], {
    addr: 0x10000000 + 2 * MiB + 4096,
    length: MiB - 4096,
    fileOffset: 0x1000 + 2 * MiB + 4096,
  });
  assert.deepEqual(b[1], { addr: 0x20000000, length: MiB + 8192, fileOffset: 0x1000 + 3 * MiB });
});

Deno.test("only private anonymous memory of the process's own is loaded by userfaultfd", () => {
  const m = (extra: Partial<Mapping>) =>
    ({ kind: "anon", vmFlags: ["rd", "wr", "mr", "mw", "me", "ac"], ...extra }) as Mapping;
  assert.equal(uffdEligible(m({})), true);
  assert.equal(uffdEligible(m({ kind: "file-private" })), false);
  assert.equal(uffdEligible(m({ kind: "anon-shared" })), false);
  assert.equal(uffdEligible(m({ inherited: true } as Partial<Mapping>)), false);
  assert.equal(uffdEligible(m({ vmFlags: ["rd", "wr", "ht"] })), false);
  assert.equal(uffdEligible(m({ vmFlags: ["rd", "wr", "hg"] })), false, "huge pages asked for");
  assert.equal(
    uffdEligible(m({ vmFlags: ["rd", "wr", "um"] })),
    false,
    "the program's own userfaultfd",
  );
});

Deno.test("the helper's tid is outside every pid and tid of the tree, one per process", () => {
  const a = imageOf(100, [100, 999, 997]);
  const b = imageOf(998);
  const images = new Map([[100, a], [998, b]]);
  const all = () => true;
  assert.equal(pageHelperTid(a, images, 1000, all), 996);
  assert.equal(pageHelperTid(b, images, 1000, all), 995);
  // Ids in use now are skipped too.
  assert.equal(pageHelperTid(a, images, 1000, (tid) => tid !== 996), 995);
  assert.equal(pageHelperTid(b, images, 1000, (tid) => tid !== 996), 994);
});

/** Dumps, kills and restores rt_pages; asserts that the program splits its pages, and its checks. */
async function roundTrip(): Promise<void> {
  const { t, trigger } = await startTriggered("rt_pages", READY, { timeoutMs: 20000 });
  const rt = await dumpKillRestore(t);
  const plan = await planRestore(rt.dir);
  const ops = plan.units[0].compiled.bootstrap.restore.ops;
  const helpers = ops.filter((o) => o.comment?.startsWith("page helper thread")).length;
  // The read-write and the read-only regions are adjacent: one run of anonymous mappings
  // (engine/restore/anon_runs.ts), one helper; the sparse reservation: another.
  assert.ok(helpers >= 2, `${helpers} page helper clones in the program, expected 2`);
  // The helper is looked for right after the clone (later, a helper done with its half
  // would be gone, and the main thread would load that half again).
  ops.forEach((o, i) => {
    if (o.comment?.startsWith("page helper thread")) assert.equal(ops[i + 1].nr, SYS.tgkill);
  });
  // Both ranges are private anonymous: copied in by the process's own userfaultfd, the usual
  // loads beside them as the fallback.
  assert.equal(ops.filter((o) => o.nr === SYS.userfaultfd).length, 2);
  const copies = ops.filter((o) => o.nr === SYS.ioctl && BigInt(o.args[1]) === UFFDIO_COPY);
  assert.ok(copies.length >= 8, `${copies.length} UFFDIO_COPY ops`);
  assert.ok(ops.some((o) => o.nr === SYS.madvise), "the usual loads are there too");
  await Deno.writeTextFile(trigger, "");
  assertChecksPassed(t, CHECKS, await t.wait(20000));
}

/**
 * The CLI's restore of rt_pages, paused at the exec stop (the program is
 * compiled, with the tid its helper will ask for); another process takes
 * that tid; the restore goes on.
 */
async function roundTripHelperTidTaken(): Promise<void> {
  const { t, trigger } = await startTriggered("rt_pages", READY, { timeoutMs: 20000 });
  const pid = t.pid;
  const dir = await tempImageDir();
  await checkpoint(pid, { dir });
  await t.wait();
  const paused = await startPaused(["restore", dir, "--detach"], "exec");
  // What the compile chose a moment ago (the same ids are in use now).
  const tid = pageHelperTid(imageOf(pid), new Map([[pid, imageOf(pid)]]));
  const holder = await startTarget("hold_tid", [String(tid)]);
  const m = await holder.waitFor(/^(held (\d+)|setup failed: clone3: File exists)$/m);
  if (m[2]) adoptPid(Number(m[2])); // ours to kill at the end
  else console.log(`note: tid ${tid} was taken by another process`);
  Deno.kill(paused.child.pid, "SIGCONT");
  const out = await paused.output;
  assert.equal(out.code, 0, out.stderr);
  t.resetAfterRestore();
  await Deno.writeTextFile(trigger, "");
  assertChecksPassed(t, CHECKS, await t.wait(20000));
}

Deno.test(
  "large mappings restored by two threads come back exact",
  withTargets(roundTrip),
);

Deno.test(
  "with the helper's tid taken, the main thread loads every page",
  withTargets(roundTripHelperTidTaken),
);

const exists = (path: string) => {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test(
  "cryo killed while the page helper runs leaves nothing behind; the image restores",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_pages", READY, {
      extra: ["256"],
      timeoutMs: 20000,
    });
    const pid = t.pid;
    const helper = pageHelperTid(imageOf(pid), new Map([[pid, imageOf(pid)]]));
    const dir = await tempImageDir();
    await checkpoint(pid, { dir });
    await t.wait();
    const cli = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../cli.ts", import.meta.url).pathname,
        "restore",
        dir,
        "--detach",
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    let seen = false;
    const deadline = Date.now() + 60_000;
    while (!seen && Date.now() < deadline) {
      seen = exists(`/proc/${pid}/task/${helper}`);
      if (!seen) await sleep(1);
    }
    cli.kill("SIGKILL");
    await cli.status;
    assert.ok(seen, `the page helper ${helper} of ${pid} never appeared`);
    // PTRACE_O_EXITKILL kills the traced process, and with it its untraced helper thread.
    const gone = Date.now() + 10_000;
    while ((exists(`/proc/${pid}`) || exists(`/proc/${helper}`)) && Date.now() < gone) {
      try {
        waitPid(pid, __WALL | WNOHANG); // this process is a subreaper: the orphan comes here
      } catch { /* not ours (yet) */ }
      await sleep(5);
    }
    assert.ok(!exists(`/proc/${pid}`), `process ${pid} is still there`);
    assert.ok(!exists(`/proc/${helper}`), `the page helper ${helper} is still there`);
    const tree = await restore(dir);
    t.resetAfterRestore();
    assert.equal(tree.rootPid, pid);
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, CHECKS, await t.wait(20000));
  }),
);

Deno.test(
  "a corrupt byte in the helper's half is refused by the checksum, leaving nothing",
  withTargets(async () => {
    const { t } = await startTriggered("rt_pages", READY, { timeoutMs: 20000 });
    const pid = t.pid;
    const dir = await tempImageDir();
    await checkpoint(pid, { dir });
    await t.wait();
    const elf = `${dir}/${pid}.elf`;
    const info = await readImageFile(elf);
    // The last page of the largest mapping's pages: in the helper's half.
    const big = info.process.mappings.reduce((a, m) =>
      m.pages.reduce((n, r) => n + r.length, 0) > a.pages.reduce((n, r) => n + r.length, 0) ? m : a
    );
    const last = big.pages[big.pages.length - 1];
    const at = last.fileOffset + last.length - 100;
    {
      using f = await Deno.open(elf, { read: true, write: true });
      const b = new Uint8Array(1);
      await f.seek(at, Deno.SeekMode.Start);
      await f.read(b);
      b[0] ^= 0x40;
      await f.seek(at, Deno.SeekMode.Start);
      await f.write(b);
    }
    await assert.rejects(restore(dir), (e: unknown) => {
      assert.ok(e instanceof ImageFormatError, `expected ImageFormatError, got ${e}`);
      assert.match((e as Error).message, /checksum crc32:[0-9a-f]+ differs from the manifest/);
      return true;
    });
    const helper = pageHelperTid(imageOf(pid), new Map([[pid, imageOf(pid)]]));
    const gone = Date.now() + 10_000;
    while (exists(`/proc/${pid}`) && Date.now() < gone) await sleep(5);
    assert.ok(!exists(`/proc/${pid}`), `process ${pid} is still there`);
    assert.ok(!exists(`/proc/${helper}`), `the page helper ${helper} is still there`);
  }),
);
