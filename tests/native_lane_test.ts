/**
 * engine/dump/native_lane.ts and ffi/syscall_table.ts: the pre-copy's
 * second copy lane as a syscall table run on one of Deno's blocking-pool
 * threads.
 *
 * - a table runs its syscalls and CRC folds in order on another thread and
 *   stores each result; its done flag rises when it is over;
 * - the table lane alone, and with cryo's thread taking its share, writes
 *   the same files, block CRCs, ends and runs as the one-lane copy
 *   (`copyPlanned`) of runs of odd lengths of the test's own memory (also
 *   with the files' page regions preallocated);
 * - a segment the table cannot read whole (part of its memory unmapped)
 *   is copied again on cryo's thread: zeros and the unreadable part
 *   reported, as the one-lane copy does;
 * - a job of a process that does not exist (gone meanwhile) copies
 *   nothing and reports all its bytes lost (the pre-copy then drops it);
 *   a job whose file cannot be written (/dev/full) fails the copy; either
 *   way nothing is left open and the next copy works;
 * - cryo's thread claims the table's last segments back while the table
 *   copies the first ones, for other tables (the last half of what the
 *   table has not reached, again and again) or one by one for itself
 *   (`claimsHere`), also from the first of two tables (a starter holding
 *   most of the segments): the same files, block CRCs and runs;
 * - a claimed segment the table copied too (forced: the claims leave the
 *   table's guards, `unguardedClaims`) is a conflict, copied again by cryo's
 *   thread: the same files, block CRCs and runs, either way.
 *
 * The round trip and the kill of cryo during a copy on this lane are in
 * tests/precopy_test.ts (`CRYO_COPY_LANES=native`).
 */

import assert from "node:assert/strict";
import { copyPlanned } from "../engine/dump/precopy_copy.ts";
import { copyOnNativeLane, NativeCopy, nativeLaneAvailable } from "../engine/dump/native_lane.ts";
import { closeRawFd, openRawFd, SyscallTable, tablesAvailable } from "../ffi/syscall_table.ts";
import { crc32, crc32AfterFold } from "../engine/image/crc32.ts";
import { addressOf, syscall } from "../ffi/libc.ts";
import { SYS } from "../ffi/sysno.ts";
import { pinCheckFn } from "../ffi/pin_check.ts";
import { readPagemap } from "../engine/proc/pagemap.ts";
import type { CopyJob } from "../engine/dump/precopy_copy.ts";
import type { Vma } from "../engine/dump/vmas.ts";
import { RT_COW_READY } from "./helpers/checks.ts";
import { startTriggered } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";
import {
  assertSameFiles,
  assertSameResult,
  blocksOf,
  jobOf,
  MiB,
  PAGE,
  patterned,
} from "./helpers/copy_jobs.ts";

Deno.test("a syscall table runs its syscalls and folds on another thread, in order", async () => {
  if (!tablesAvailable()) return; // not x86-64 with PCLMULQDQ: the lane is never used
  const buf = new Uint8Array(MiB + 4096);
  for (let i = 0; i < buf.length; i++) buf[i] = (i * 7 + 3) & 0xff;
  const t = new SyscallTable(1); // grows
  const first = t.syscall(SYS.getpid);
  const out = new Uint8Array(16);
  t.fold(addressOf(buf), buf.length, 0xffffffff, out);
  const bad = t.syscall(SYS.close, -1);
  const failed = t.syscallOrSkipNext(SYS.close, -1);
  const skipped = t.syscall(SYS.getpid);
  const passed = t.syscallOrSkipNext(SYS.getppid);
  const notSkipped = t.syscall(SYS.getpid);
  const tid = t.syscall(SYS.gettid);
  const run = t.run();
  await run.finished;
  assert.ok(run.done(), "the done flag rose");
  assert.equal(t.result(first), BigInt(Deno.pid));
  assert.equal(crc32AfterFold(out, new Uint8Array(0)), crc32(buf), "the fold's CRC");
  assert.equal(t.result(bad), -9n, "EBADF, as the kernel returns it");
  assert.equal(t.result(failed), -9n);
  assert.equal(t.result(skipped), 0n, "skipped after a failed entry that asks it");
  // 0 where the parent is outside this pid namespace (CI): succeeded all the same.
  assert.ok(t.result(passed) >= 0n, "getppid succeeded");
  assert.equal(t.result(notSkipped), BigInt(Deno.pid), "run after a successful one");
  assert.ok(t.result(tid) > 0n && t.result(tid) !== BigInt(Deno.pid), "another thread ran it");
  const last = new SyscallTable();
  last.syscallOrSkipNext(SYS.getpid);
  assert.throws(() => last.run(), /last entry/, "no skip over the end");
});

Deno.test("a syscall table's number arguments and results: above 2^32, negative, and a fold's output by address", async () => {
  if (!tablesAvailable()) return;
  const path = await Deno.makeTempFile();
  const fd = openRawFd(path, false);
  try {
    const buf = new Uint8Array(4096).map((_, i) => (i * 13 + 1) & 0xff);
    const out = new Uint8Array(16);
    const t = new SyscallTable(1);
    const far = t.syscall(SYS.lseek, fd, 2 ** 40 + 4096 * 3 + 7, 0 /* SEEK_SET */);
    const near = t.syscall(SYS.lseek, fd, 2 ** 32 - 1, 0);
    const negative = t.syscall(SYS.lseek, fd, -1, 0);
    t.fold(addressOf(buf), buf.length, 0xffffffff, addressOf(out));
    t.keep(out);
    const run = t.run();
    await run.finished;
    assert.equal(t.result(far), BigInt(2 ** 40 + 4096 * 3 + 7));
    assert.equal(t.result(near), BigInt(2 ** 32 - 1));
    assert.equal(t.result(negative), -22n, "EINVAL: -1 written as all ones");
    assert.equal(t.resultNumber(far), 2 ** 40 + 4096 * 3 + 7);
    assert.equal(t.resultNumber(near), 2 ** 32 - 1);
    assert.equal(t.resultNumber(negative), -22);
    assert.equal(crc32AfterFold(out, new Uint8Array(0)), crc32(buf), "the fold's CRC");
  } finally {
    closeRawFd(fd);
    await Deno.remove(path);
  }
});

// "beside": the table copies it all while cryo's thread runs other work (the dump's rehearsal).
// "pinned": every piece checked (pinMinBytes: a page); alone: no piece checked (pin: false).
for (const share of [1, 0.5, "beside", "pinned"] as const) {
  Deno.test(
    `the table lane${
      share === 1
        ? " alone, every piece read from /proc/<pid>/mem,"
        : share === "beside"
        ? " beside other work"
        : share === "pinned"
        ? " with every piece read by process_vm_readv,"
        : " with cryo's thread"
    } writes the same files, block CRCs and runs as one lane`,
    async () => {
      if (!nativeLaneAvailable()) return;
      const { buf, addr } = patterned(16);
      const dir = await Deno.makeTempDir({ prefix: "cryo-native-" });
      try {
        const serial = [
          await copyPlanned(jobOf(addr, `${dir}/one-a`, 12288, 0)),
          await copyPlanned(jobOf(addr, `${dir}/one-b`, 8192, 7)),
        ];
        const jobs = [jobOf(addr, `${dir}/two-a`, 12288, 0), jobOf(addr, `${dir}/two-b`, 8192, 7)];
        // With cryo's thread: the files' page regions preallocated too (a dump not synced).
        let besides = 0;
        const pinnedBefore = NativeCopy.pinned;
        const got = await copyOnNativeLane(jobs, {
          segmentBytes: MiB,
          share: share === "beside" ? 0.9 : share === "pinned" ? 1 : share,
          preallocate: share !== 1,
          ...(share === "pinned" ? { pinMinBytes: PAGE } : share === 1 ? { pin: false } : {}),
          ...(share === "beside"
            ? { beside: () => new Promise((r) => setTimeout(r, 5)).then(() => besides++) }
            : {}),
        });
        assert.equal(besides, share === "beside" ? 1 : 0, "the work beside ran once, awaited");
        assert.equal(
          NativeCopy.pinned > pinnedBefore,
          share !== 1,
          "process_vm_readv read pieces (and only where they are checked)",
        );
        for (const [k, name] of [[0, "a"], [1, "b"]] as const) {
          const what = `file ${name}`;
          assertSameResult(got[k], serial[k], what);
          assertSameFiles(`${dir}/one-${name}`, `${dir}/two-${name}`, what);
          assert.deepEqual(
            got[k].blockCrcs,
            blocksOf(`${dir}/two-${name}`, jobs[k].pagesStart, got[k].pagesEnd),
            `${what}: block CRCs of the file`,
          );
        }
        const file = Deno.readFileSync(`${dir}/two-a`);
        assert.deepEqual(file.subarray(12288, 12288 + 3 * PAGE), buf.subarray(0, 3 * PAGE));
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  );
}

Deno.test("a table's pin check: 1 when every entry's present and exclusive bits are as asked, else negative (the next entry skipped)", async () => {
  const check = pinCheckFn();
  if (!check || !tablesAvailable()) return;
  const both = (1n << 63n) | (1n << 56n);
  const all = new BigUint64Array([both, both | 0x1234n, both]);
  const one = new BigUint64Array([both, 1n << 63n, both]); // present, not exclusive
  const none = new BigUint64Array(3); // never read: zeros
  const fd = openRawFd("/dev/null", false);
  try {
    const t = new SyscallTable(1);
    const cases: [BigUint64Array<ArrayBuffer>, number, number, bigint][] = [
      [all, 1, 1, 1n],
      [all, 0, 1, -2n],
      [one, 1, 1, -2n],
      [one, 0, 1, 1n],
      [none, 1, 1, -2n],
      [none, 0, 1, 1n],
      [one, 1, -1, -9n], // a guard patched by a claim
      [one, 0, -1, -9n],
    ];
    const at = cases.map(([e, want, f]) => {
      const c = t.callOrSkipNext(check, f < 0 ? -1 : fd, e, e.length, want);
      return [c, t.syscall(SYS.getpid)];
    });
    // Only the entries before a failing one count: [both, both] then [both, no bit 56].
    const firstTwo = t.callOrSkipNext(check, fd, one, 1, 1);
    const firstTwoNext = t.syscall(SYS.getpid);
    await t.run().finished;
    cases.forEach(([, , , want], i) => {
      assert.equal(t.result(at[i][0]), want, `case ${i}`);
      assert.equal(t.result(at[i][1]), want > 0n ? BigInt(Deno.pid) : 0n, `case ${i}: next`);
    });
    assert.equal(t.result(firstTwo), 1n, "only n entries are looked at");
    assert.equal(t.result(firstTwoNext), BigInt(Deno.pid));
  } finally {
    closeRawFd(fd);
  }
});

Deno.test("a segment the table cannot read whole is copied again here: zeros, reported lost", async () => {
  if (!nativeLaneAvailable()) return;
  const size = 16 * MiB;
  const at = syscall(SYS.mmap, 0, size, 3, 0x22, -1, 0); // PROT_READ|WRITE, MAP_PRIVATE|ANONYMOUS
  const dir = await Deno.makeTempDir({ prefix: "cryo-native-" });
  try {
    const mem = new Uint8Array(
      Deno.UnsafePointerView.getArrayBuffer(Deno.UnsafePointer.create(at)!, size),
    );
    for (let i = 0; i < size; i += PAGE) mem[i] = 1 + (i / PAGE) % 251;
    // A hole in the middle of the second run (pages 5..305): unreadable by both copies.
    syscall(SYS.munmap, at + BigInt(100 * PAGE), 50 * PAGE);
    // And one in its second MiB (pages 280..290): in the second table when it is split.
    syscall(SYS.munmap, at + BigInt(280 * PAGE), 10 * PAGE);
    const serial = await copyPlanned(jobOf(at, `${dir}/one`, 4096, 0));
    const got = await copyOnNativeLane([jobOf(at, `${dir}/two`, 4096, 0)], {
      segmentBytes: MiB,
      share: 1,
    });
    assertSameResult(got[0], serial, "with a hole");
    // The same with the hole in the second table's process_vm_readv pieces.
    const pinned = await copyOnNativeLane([jobOf(at, `${dir}/three`, 4096, 0)], {
      segmentBytes: MiB,
      share: 1,
      pinMinBytes: PAGE,
    });
    assertSameResult(pinned[0], serial, "with a hole, read by process_vm_readv");
    assertSameFiles(`${dir}/one`, `${dir}/three`, "with a hole, read by process_vm_readv");
    assertSameFiles(`${dir}/one`, `${dir}/two`, "with a hole");
    assert.ok(
      !got[0].copied.some((r) =>
        r.addr < Number(at) + 150 * PAGE && r.addr + r.length > Number(at) + 100 * PAGE
      ),
      "the hole is not among the copied runs",
    );
    const file = Deno.readFileSync(`${dir}/two`);
    // Page 100 of the mapping is the 95th page of the second run, after the first run's 3.
    const hole = 4096 + (3 + 95) * PAGE;
    assert.ok(file.subarray(hole, hole + 50 * PAGE).every((b) => b === 0), "zeros for the hole");
    assert.equal(file[hole - PAGE], 1 + 99 % 251, "the page before it copied");
  } finally {
    syscall(SYS.munmap, at, size);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a job of a process gone copies nothing, all lost; a file that cannot be written fails the copy; nothing left open", async () => {
  if (!nativeLaneAvailable()) return;
  const { addr } = patterned(4);
  const dir = await Deno.makeTempDir({ prefix: "cryo-native-" });
  const fdsBefore = [...Deno.readDirSync("/proc/self/fd")].length;
  try {
    const gone = { ...jobOf(addr, `${dir}/gone`, 4096, 0), pid: 0x3ffffff0 };
    const lost = await copyOnNativeLane([gone], { segmentBytes: MiB, share: 0.5 });
    assert.equal(lost[0].lostBytes, gone.planned[0].runs.reduce((n, r) => n + r.length, 0));
    assert.deepEqual(lost[0].copied, []);
    const full = jobOf(addr, "/dev/full", 4096, 0);
    await assert.rejects(() => copyOnNativeLane([full], { segmentBytes: MiB, share: 0.5 }));
    // Nothing of the failed copies is left open: a new copy works.
    assert.equal([...Deno.readDirSync("/proc/self/fd")].length, fdsBefore, "fds left open");
    const ok = jobOf(addr, `${dir}/ok`, 4096, 0);
    const got = await copyOnNativeLane([ok], { segmentBytes: MiB, share: 0.5 });
    assert.equal(got[0].bytes, ok.planned[0].runs.reduce((n, r) => n + r.length, 0));
    assert.equal(got[0].lostBytes, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

for (const claimsHere of [false, true]) {
  Deno.test(
    `cryo's thread claims the table's last segments back${
      claimsHere ? ", one by one" : " for another table"
    }: the same files, CRCs and runs`,
    async () => {
      await claimedCopy(claimsHere);
    },
  );
}

Deno.test("cryo's thread claims segments back from the first of two tables too: the same files, CRCs and runs", async () => {
  if (!nativeLaneAvailable()) return;
  // A starter table of 8 of the job's 11 MiB: it has the most segments not reached when cryo's
  // thread looks first. Which table a claim took from is seen through the two methods, wrapped.
  const start = NativeCopy.start, half = NativeCopy.prototype.claimHalf;
  const made: NativeCopy[] = [], from = new Set<NativeCopy>();
  NativeCopy.start = (...a: Parameters<typeof start>) => {
    const c = start(...a);
    made.push(c);
    return c;
  };
  NativeCopy.prototype.claimHalf = function (this: NativeCopy, minLeft?: number) {
    const got = half.call(this, minLeft);
    if (got !== undefined) from.add(this);
    return got;
  };
  try {
    await claimedCopy(
      false,
      8 * MiB,
      () => made.length > 0 && from.has(made[0]),
      () => made.length = 0,
    );
  } finally {
    NativeCopy.start = start;
    NativeCopy.prototype.claimHalf = half;
  }
});

async function claimedCopy(
  claimsHere: boolean,
  starterBytes?: number,
  /** Whether the claims looked for happened (default: any claim). */
  claimedAsWanted?: () => boolean,
  /** Run before each try. */
  beforeTry?: () => void,
): Promise<void> {
  if (!nativeLaneAvailable()) return;
  const { buf, addr } = patterned(64);
  const dir = await Deno.makeTempDir({ prefix: "cryo-native-" });
  try {
    const serial = await copyPlanned(jobOf(addr, `${dir}/one`, 8192, 3));
    const claimedBefore = NativeCopy.claimed;
    // The table starts at the first of 64 segments; cryo's thread claims from the last one on
    // at once (a copy of 1 MiB takes the table ~1 ms): some are claimed in one of a few tries.
    // On a loaded machine the table can finish before cryo's thread runs at all, so it tries up
    // to 12 times (seen failing once in 4 tries under load); a broken claim never passes.
    const wanted = claimedAsWanted ?? (() => NativeCopy.claimed > claimedBefore);
    let seen = false;
    for (let attempt = 0; attempt < 12 && !seen; attempt++) {
      const path = `${dir}/two-${attempt}`;
      beforeTry?.();
      const got = await copyOnNativeLane([jobOf(addr, path, 8192, 3)], {
        segmentBytes: MiB,
        claimsHere,
        ...(starterBytes ? { starterBytes } : {}),
      });
      assertSameResult(got[0], serial, `try ${attempt}`);
      assertSameFiles(`${dir}/one`, path, `try ${attempt}`);
      assert.deepEqual(got[0].blockCrcs, blocksOf(path, 8192, got[0].pagesEnd), "block CRCs");
      seen = wanted();
    }
    assert.ok(seen, "segments were claimed back as wanted");
    assert.equal(buf[1 + PAGE], 1, "the memory copied is still this buffer's (not collected)");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

for (const claimsHere of [false, true]) {
  Deno.test(
    `a claimed segment the table copied too is copied again${
      claimsHere ? " (claims one by one)" : ""
    }: the same files, CRCs and runs`,
    async () => {
      await conflictedCopy(claimsHere);
    },
  );
}

async function conflictedCopy(claimsHere: boolean): Promise<void> {
  if (!nativeLaneAvailable()) return;
  const { buf, addr } = patterned(64);
  const dir = await Deno.makeTempDir({ prefix: "cryo-native-" });
  try {
    const serial = await copyPlanned(jobOf(addr, `${dir}/one`, 8192, 3));
    const claimedBefore = NativeCopy.claimed, conflictsBefore = NativeCopy.conflicts;
    // The claims leave the table's guards: the table copies every claimed segment as well.
    for (let attempt = 0; attempt < 4 && NativeCopy.claimed === claimedBefore; attempt++) {
      const path = `${dir}/two-${attempt}`;
      const got = await copyOnNativeLane([jobOf(addr, path, 8192, 3)], {
        segmentBytes: MiB,
        unguardedClaims: true,
        claimsHere,
      });
      assertSameResult(got[0], serial, `try ${attempt}`);
      assertSameFiles(`${dir}/one`, path, `try ${attempt}`);
      assert.deepEqual(got[0].blockCrcs, blocksOf(path, 8192, got[0].pagesEnd), "block CRCs");
    }
    const claims = NativeCopy.claimed - claimedBefore;
    assert.ok(claims > 0, "segments were claimed back from the table");
    assert.equal(NativeCopy.conflicts - conflictsBefore, claims, "every claim was a conflict");
    assert.equal(buf[1 + PAGE], 1, "the memory copied is still this buffer's (not collected)");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test(
  "pages shared copy-on-write with a fork are read without a pin (still shared), the others with process_vm_readv",
  withTargets(async () => {
    if (!nativeLaneAvailable() || !pinCheckFn()) return;
    // rt_cow: pages 20-29 of the region written by the parent since the fork (its own), 30.. shared.
    const { t, ready } = await startTriggered("rt_cow", RT_COW_READY, { passWork: true });
    const child = Number(ready[2]);
    const region = BigInt(`0x${ready[3]}`);
    const sharedAt = region + 30n * BigInt(PAGE), sharedPages = 600;
    const shared = () => {
      const a = readPagemap(t.pid, sharedAt, sharedAt + BigInt(sharedPages * PAGE));
      const b = readPagemap(child, sharedAt, sharedAt + BigInt(sharedPages * PAGE));
      let n = 0;
      for (let i = 0; i < sharedPages; i++) {
        if (a.present(i) && a.pfn(i) !== 0 && a.pfn(i) === b.pfn(i) && !a.exclusive(i)) n++;
      }
      return n;
    };
    assert.equal(shared(), sharedPages, "shared before the copy");
    const dir = await Deno.makeTempDir({ prefix: "cryo-native-" });
    try {
      const job = (path: string): CopyJob => ({
        pid: t.pid,
        path,
        pagesStart: 4096,
        planned: [{
          vma: { start: region, end: region + 8192n * BigInt(PAGE), perms: "rw-p" } as Vma,
          runs: [
            { addr: region + 20n * BigInt(PAGE), length: 10 * PAGE }, // the parent's own
            { addr: sharedAt, length: sharedPages * PAGE }, // shared with the child
          ],
        }],
      });
      const pinnedBefore = NativeCopy.pinned;
      const got = await copyOnNativeLane([job(`${dir}/two`)], {
        segmentBytes: MiB,
        share: 1,
        pinMinBytes: PAGE,
      });
      assert.equal(NativeCopy.pinned - pinnedBefore, 1, "only the parent's own run was pinned");
      assert.equal(shared(), sharedPages, "still shared after the copy: nothing unshared");
      const serial = await copyPlanned(job(`${dir}/one`));
      assertSameResult(got[0], serial, "rt_cow");
      assertSameFiles(`${dir}/one`, `${dir}/two`, "rt_cow");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }),
);
