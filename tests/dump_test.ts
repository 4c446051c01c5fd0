/**
 * Tests of `checkpoint()` (and `cryo dump` for the error cases) against
 * real processes:
 *
 * - a multi-threaded target (tests/targets/dump_threads.c) dumped with
 *   `leaveRunning`: the image matches /proc as read independently before
 *   the dump (mappings, thread ids and names, process facts), every
 *   thread's registers, signal mask and XSAVE area equal what this test
 *   read itself through ptrace, the saved pages hold the target's known
 *   patterns and equal /proc/<pid>/mem (only touched anonymous pages and
 *   COW'd file pages saved), and the target keeps running and passes its
 *   own self-check (no EINTR, a 4 s sleep still lasts 4 s);
 * - a 1 GiB sparse mapping with six touched pages gives an image of
 *   roughly the touched size;
 * - every error case of the dump: unknown pid, cryo itself and its
 *   ancestors, a kernel thread, a zombie, a process (or one of its
 *   threads) traced by another tracer, no permission, an unsupported fd,
 *   the target dying mid-dump, a non-empty directory, a full disk; each
 *   gives one clear line (exit 1 from the CLI), writes nothing and leaves
 *   the target running untouched.
 *
 * @module
 */

import { denoDirForNobody } from "./helpers/nobody.ts";
import assert from "node:assert/strict";
import { threadXsave } from "../engine/image/thread_xsave.ts";
import { checkpoint, type DumpEvent } from "../engine/dump/mod.ts";
import { readImage } from "../engine/inspect.ts";
import { readPageRun } from "../engine/image/reader.ts";
import type { Mapping, PageRun } from "../engine/model.ts";
import { TargetError } from "../engine/errors.ts";
import {
  detach,
  getRegs,
  getSigmask,
  getXstate,
  interrupt,
  seize,
  waitStop,
} from "../ffi/ptrace.ts";
import { regsToHex } from "../ffi/regs.ts";
import { rawSyscall } from "../ffi/libc.ts";
import { SYS } from "../ffi/sysno.ts";
import { encodeBase64 } from "../engine/base64.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { assertOneLineError, runCli } from "./helpers/commands.ts";
import { pathExists, tempDir } from "./helpers/fs.ts";
import { freePid, ppidOf, statusField, tasksOf } from "./helpers/proc.ts";
import { SIGKILL, SIGUSR1 } from "./helpers/signals.ts";
import { startTarget, type Target, withTargets } from "./helpers/targets.ts";
import { sleep, waitUntil } from "./helpers/wait.ts";

const PAGE = 4096;
const ERESTART_RESTARTBLOCK = 516n;
const SYS_RESTART_SYSCALL = 219n;

// ------------------------------------------------------------------ helpers

/** Asserts that an error thrown by checkpoint() has a one-line message matching `re`. */
async function assertRejectsOneLine(p: Promise<unknown>, re: RegExp, what: string) {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof Error, `${what}: ${e}`);
    assert.ok(!e.message.includes("\n"), `${what}: multi-line message: ${e.message}`);
    assert.match(e.message, re, `${what}: ${e.message}`);
    return true;
  });
}

/**
 * A fresh empty parent directory for an image (the image goes to
 * `<parent>/image`), removed after the test by `withTargets`.
 */
function freshParent(): Promise<string> {
  return tempDir("cryo-dump-test-");
}

/** Asserts that `dir` holds nothing but `expected` (no image, no partial temp dir). */
function assertDirHolds(dir: string, expected: string[], what: string): void {
  const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
  assert.deepEqual(names, [...expected].sort(), `${what}: left behind in ${dir}`);
}

/**
 * Asserts that no thread of `pid` is in a ptrace stop and that each is
 * traced by `tracerOf(tid)` (0 = nobody).
 */
function assertTracers(pid: number, tracerOf: (tid: number) => number, what: string): void {
  for (const tid of tasksOf(pid)) {
    assert.equal(
      Number(statusField(pid, "TracerPid", tid)),
      tracerOf(tid),
      `${what}: tracer of ${tid}`,
    );
    assert.doesNotMatch(statusField(pid, "State", tid), /^t/, `${what}: ${tid} stopped`);
  }
}

/** Asserts that every thread of `pid` runs, traced by nobody. */
function assertNotHeld(pid: number, what: string): void {
  assertTracers(pid, () => 0, what);
}

/** Sends SIGUSR1 (the self-check trigger of the dump_* targets) and expects PASS and exit 0. */
async function assertSelfCheckPasses(t: Target, what: string): Promise<void> {
  t.signal(SIGUSR1);
  assertChecksPassed(t, [], await t.wait(15000), { what });
}

/**
 * Asserts what a refused dump must leave: nothing in `parent` but `left`,
 * and the target running, traced by nobody, passing its self-check.
 */
async function assertRefusedCleanly(
  t: Target,
  parent: string,
  left: string[],
  what: string,
): Promise<void> {
  assertDirHolds(parent, left, `after the ${what}`);
  assertNotHeld(t.pid, what);
  await assertSelfCheckPasses(t, `after the ${what}`);
}

interface MapsLine {
  start: string;
  end: string;
  perms: string;
  name: string;
}

/** /proc/<pid>/maps, parsed here (independently of engine/proc). */
function procMaps(pid: number): MapsLine[] {
  return Deno.readTextFileSync(`/proc/${pid}/maps`).split("\n").filter(Boolean).map((l) => {
    const m = l.match(/^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \S+\s*(.*)$/);
    assert.ok(m, l);
    return {
      start: `0x${BigInt(`0x${m[1]}`).toString(16)}`,
      end: `0x${BigInt(`0x${m[2]}`).toString(16)}`,
      perms: m[3],
      name: m[4],
    };
  });
}

/** Reads `length` bytes of `pid`'s memory at `addr` through /proc/<pid>/mem. */
function readProcMem(pid: number, addr: bigint, length: number): Uint8Array {
  using f = Deno.openSync(`/proc/${pid}/mem`, { read: true });
  const buf = new Uint8Array(length);
  for (let done = 0; done < length;) {
    f.seekSync(addr + BigInt(done), Deno.SeekMode.Start);
    const n = f.readSync(buf.subarray(done));
    assert.ok(n !== null && n > 0, `read /proc/${pid}/mem at ${addr + BigInt(done)}`);
    done += n;
  }
  return buf;
}

const K = 0x9e3779b97f4a7c15n;
const SEED = 0x5eed5eed12345678n;

/** The pattern of dump_threads/dump_memory: the word at address a is a*K ^ SEED. */
function patternBytes(addr: bigint, length: number): Uint8Array {
  const out = new Uint8Array(length);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < length; i += 8) {
    dv.setBigUint64(i, BigInt.asUintN(64, (addr + BigInt(i)) * K) ^ SEED, true);
  }
  return out;
}

/** The image mapping that contains [addr, addr+length). */
function mappingAt(mappings: Mapping[], addr: bigint, length: number): Mapping {
  const m = mappings.find((x) => BigInt(x.start) <= addr && addr + BigInt(length) <= BigInt(x.end));
  assert.ok(m, `no mapping holds 0x${addr.toString(16)}+${length}`);
  return m;
}

/** The saved runs of `m` clipped to [addr, addr+length), as [page index, pages] pairs. */
function savedPagesIn(m: Mapping, addr: bigint, length: number): [number, number][] {
  const end = addr + BigInt(length);
  const out: [number, number][] = [];
  for (const r of [...m.pages].sort((a, b) => BigInt(a.addr) < BigInt(b.addr) ? -1 : 1)) {
    const s = BigInt(r.addr) > addr ? BigInt(r.addr) : addr;
    const e = BigInt(r.addr) + BigInt(r.length) < end ? BigInt(r.addr) + BigInt(r.length) : end;
    if (s < e) out.push([Number(s - addr) / PAGE, Number(e - s) / PAGE]);
  }
  return out;
}

/** The saved bytes of [addr, addr+length) (which must be fully saved) read from the image. */
async function savedBytes(
  elf: string,
  m: Mapping,
  addr: bigint,
  length: number,
): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  let covered = 0;
  for (const r of m.pages) {
    const rs = BigInt(r.addr);
    const re = rs + BigInt(r.length);
    const s = rs > addr ? rs : addr;
    const e = re < addr + BigInt(length) ? re : addr + BigInt(length);
    if (s >= e) continue;
    const run: PageRun = {
      addr: `0x${s.toString(16)}`,
      length: Number(e - s),
      fileOffset: r.fileOffset + Number(s - rs),
    };
    out.set(await readPageRun(elf, run), Number(s - addr));
    covered += run.length;
  }
  assert.equal(covered, length, `0x${addr.toString(16)}+${length} not fully saved`);
  return out;
}

/** Compares byte arrays without printing megabytes on failure. */
function assertSameBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  const i = actual.findIndex((b, k) => b !== expected[k]);
  assert.equal(i, -1, `${what}: first difference at byte ${i}`);
}

interface ThreadSnapshot {
  regs: Record<string, string>;
  sigmask: bigint;
  xsave: string;
}

/**
 * Stops every thread of `pid` with PTRACE_SEIZE + PTRACE_INTERRUPT, reads
 * its registers, signal mask and XSAVE area, and detaches again.
 */
function snapshotThreads(pid: number): Map<number, ThreadSnapshot> {
  const tids = tasksOf(pid);
  const seized: number[] = [];
  const out = new Map<number, ThreadSnapshot>();
  try {
    for (const tid of tids) {
      seize(tid, 0);
      seized.push(tid);
      interrupt(tid);
      waitStop(tid);
    }
    for (const tid of tids) {
      out.set(tid, {
        regs: regsToHex(getRegs(tid)),
        sigmask: getSigmask(tid),
        xsave: encodeBase64(getXstate(tid)),
      });
    }
  } finally {
    for (const tid of seized) detach(tid);
  }
  return out;
}

/** A 3-page file of random bytes for dump_threads to map privately. */
async function threePageFile(dir: string): Promise<string> {
  const path = `${dir}/three-pages`;
  const bytes = new Uint8Array(3 * PAGE);
  crypto.getRandomValues(bytes);
  await Deno.writeFile(path, bytes);
  return path;
}

interface ThreadsReady {
  t: Target;
  tids: number[];
  regions: Record<string, bigint>;
  file: string;
}

/** Starts dump_threads and waits until every thread is parked. */
async function startThreads(work: string): Promise<ThreadsReady> {
  const file = await threePageFile(work);
  const t = await startTarget("dump_threads", [file]);
  const m = await t.waitFor(/^ready pid=(\d+) tids=([\d,]+) (.*)$/m);
  assert.equal(Number(m[1]), t.pid);
  const regions: Record<string, bigint> = {};
  for (const [, k, v] of m[3].matchAll(/(\w+)=(0x[0-9a-f]+)/g)) regions[k] = BigInt(v);
  const tids = m[2].split(",").map(Number).sort((a, b) => a - b);
  // Every blocked worker is in its syscall once the kernel says it sleeps.
  await waitUntil(
    "threads parked",
    () =>
      tasksOf(t.pid).filter((tid) => statusField(t.pid, "State", tid).startsWith("S")).length >= 5,
  );
  await sleep(50);
  return { t, tids, regions, file };
}

// -------------------------------------------------------------------- tests

Deno.test(
  "multi-threaded target dumped with leaveRunning: the image matches /proc, ptrace and memory; the target runs on",
  withTargets(async () => {
    const work = await freshParent();
    const { t, tids, regions, file } = await startThreads(work);
    const pid = t.pid;

    // Independent view of the process, before the dump.
    const mapsBefore = procMaps(pid);
    assert.deepEqual(tasksOf(pid), tids);
    const comms = new Map(tids.map((tid) => [
      tid,
      Deno.readTextFileSync(`/proc/${pid}/task/${tid}/comm`).trim(),
    ]));
    const snap = snapshotThreads(pid);
    assertNotHeld(pid, "after our own snapshot");
    await sleep(50); // the interrupted syscalls restart

    const events: DumpEvent["type"][] = [];
    const result = await checkpoint(pid, {
      dir: `${work}/image`,
      leaveRunning: true,
      precopy: true, // even for this small target (by default only when it pays)
      onEvent: (e) => events.push(e.type),
    });
    assertNotHeld(pid, "after the dump");
    assert.equal(result.dir, `${work}/image`);
    assert.deepEqual(
      [...new Set(events)],
      ["precopied", "frozen", "process", "pages", "thawed", "written", "done"],
      "event order",
    );
    assert.equal(result.stats.processes, 1);
    assert.equal(result.stats.threads, 6);
    assert.deepEqual(result.manifest.processes.map((p) => p.pid), [pid]);
    assert.deepEqual(result.manifest.processes[0].threads.sort((a, b) => a - b), tids);
    assertDirHolds(work, ["image", "three-pages"], "temp dir renamed into place");
    assertDirHolds(result.dir, ["manifest.json", `${pid}.elf`], "image directory");

    const model = await readImage(result.dir, { verifyChecksums: true });
    assert.equal(model.processes.length, 1);
    const p = model.processes[0];
    const elf = `${result.dir}/${pid}.elf`;

    // Process facts.
    assert.equal(p.pid, pid);
    assert.equal(p.ppid, Deno.pid);
    assert.equal(p.comm, Deno.readTextFileSync(`/proc/${pid}/comm`).trim());
    const cmdline = Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0").slice(0, -1);
    assert.deepEqual(p.cmdline, cmdline);
    assert.equal(cmdline[1], file);
    assert.equal(p.exe?.path, Deno.readLinkSync(`/proc/${pid}/exe`));
    assert.equal(p.cwd, Deno.readLinkSync(`/proc/${pid}/cwd`));
    assert.equal(p.creds.uid[0], 0);

    // Mappings: every range, perms and name of /proc/<pid>/maps, in order.
    const ours = p.mappings.map((m) => ({
      start: m.start,
      end: m.end,
      perms: m.perms,
      name: m.name,
    }));
    assert.deepEqual(ours, mapsBefore);
    const fileStat = Deno.statSync(file);
    const fileMap = mappingAt(p.mappings, regions.file, 3 * PAGE);
    assert.equal(fileMap.kind, "file-private");
    assert.equal(fileMap.file?.path, file);
    assert.equal(fileMap.file?.ino, fileStat.ino);
    assert.equal(fileMap.file?.size, 3 * PAGE);
    assert.equal(mappingAt(p.mappings, regions.shared, 4 * PAGE).kind, "anon-shared");
    assert.ok(p.mappings.some((m) => m.name === "[vdso]" && m.kind === "vdso"));

    // Threads: ids, names and the registers we read ourselves while they were stopped.
    assert.deepEqual(p.threads.map((x) => x.tid).sort((a, b) => a - b), tids);
    assert.equal(p.threads[0].tid, pid, "main thread first");
    for (const th of p.threads) {
      assert.equal(th.comm, comms.get(th.tid), `comm of ${th.tid}`);
      const mine = snap.get(th.tid)!;
      assert.equal(BigInt(th.sigmask), mine.sigmask, `sigmask of ${th.comm}`);
      if (th.comm === "w-spin") {
        // Runs between the two stops: only what it never changes.
        for (const r of ["fs_base", "gs_base", "cs", "ss", "ds", "es", "fs", "gs"]) {
          assert.equal(th.regs[r], mine.regs[r], `${r} of ${th.comm}`);
        }
        continue;
      }
      const theirs = { ...th.regs };
      const expected = { ...mine.regs };
      if (BigInt.asIntN(64, BigInt(expected.rax)) === -ERESTART_RESTARTBLOCK) {
        // Our stop turned the syscall (nanosleep, poll) into restart_syscall; the dump read the
        // original call back from the kernel's restart block (engine/task/restart_block.ts).
        assert.notEqual(BigInt(theirs.orig_rax), SYS_RESTART_SYSCALL, `${th.comm}: resolved`);
      }
      assert.deepEqual(theirs, expected, `registers of ${th.comm} (${th.tid})`);
      assert.notEqual(th.syscall.nr, -1, `${th.comm} is in a syscall`);
      assert.equal(th.syscall.restart, "restart", `${th.comm}'s syscall restarts`);
      assert.equal(encodeBase64(threadXsave(th)), mine.xsave, `XSAVE area of ${th.comm}`);
    }

    // Pages: exactly the touched pages, holding the target's data and equal to /proc/<pid>/mem.
    const expectRegion = async (
      name: string,
      pages: number,
      saved: [number, number][],
      content: (addr: bigint, length: number) => Uint8Array,
    ) => {
      const addr = regions[name];
      const m = mappingAt(p.mappings, addr, pages * PAGE);
      assert.deepEqual(savedPagesIn(m, addr, pages * PAGE), saved, `saved pages of ${name}`);
      for (const [first, count] of saved) {
        const a = addr + BigInt(first * PAGE);
        const bytes = await savedBytes(elf, m, a, count * PAGE);
        assertSameBytes(bytes, content(a, count * PAGE), `${name} page ${first}: image`);
        assertSameBytes(bytes, readProcMem(pid, a, count * PAGE), `${name} page ${first}: mem`);
      }
    };
    // Page i of the sparse region holds the byte 0x30 + i.
    const sparseContent = (a: bigint, length: number) => {
      const out = new Uint8Array(length);
      for (let i = 0; i < length; i += PAGE) {
        out.fill(0x30 + Number(a - regions.sparse) / PAGE + i / PAGE, i, i + PAGE);
      }
      return out;
    };
    await expectRegion("pattern", 16, [[0, 16]], patternBytes);
    await expectRegion("sparse", 64, [[3, 1], [10, 2], [40, 1]], sparseContent);
    await expectRegion("ro", 4, [[0, 4]], (_a, n) => new Uint8Array(n).fill(0xab));
    await expectRegion("none", 2, [[0, 2]], (_a, n) => new Uint8Array(n).fill(0xcd));
    await expectRegion(
      "shared",
      4,
      [[0, 1], [2, 1]],
      (a, n) => new Uint8Array(n).fill(a === regions.shared ? 0x50 : 0x52),
    );
    await expectRegion("file", 3, [[1, 1]], (_a, n) => new Uint8Array(n).fill(0xc1));

    // The target was left running: it checks itself (no EINTR, sleep length, memory).
    await assertSelfCheckPasses(t, "after leaveRunning dump");
  }),
);

Deno.test(
  "a 1 GiB sparse mapping with six touched pages gives an image of roughly the touched size",
  withTargets(async () => {
    const work = await freshParent();
    const t = await startTarget("dump_memory", ["1024", "sparse"]);
    const m = await t.waitFor(/^ready pid=\d+ addr=(0x[0-9a-f]+) touched=(\d+)$/m);
    const addr = BigInt(m[1]);
    assert.equal(Number(m[2]), 6);
    const result = await checkpoint(t.pid, { dir: `${work}/image`, leaveRunning: true });
    const elf = `${result.dir}/${t.pid}.elf`;
    const p = (await readImage(result.dir)).processes[0];
    const region = mappingAt(p.mappings, addr, 1 << 30);
    const pages = (1 << 30) / PAGE;
    assert.deepEqual(savedPagesIn(region, addr, 1 << 30), [
      [0, 3],
      [1000, 1],
      [pages / 2, 1],
      [pages - 1, 1],
    ]);
    for (const pg of [0, 1, 2, 1000, pages / 2, pages - 1]) {
      const a = addr + BigInt(pg * PAGE);
      const bytes = await savedBytes(elf, region, a, PAGE);
      assertSameBytes(bytes, new Uint8Array(PAGE).fill((pg + 1) & 0xff), `page ${pg}`);
    }
    const st = await Deno.stat(elf);
    assert.ok(result.stats.pagesBytes < 2 << 20, `pages saved: ${result.stats.pagesBytes}`);
    assert.ok(st.size < 4 << 20, `image of ${st.size} bytes for 24 KiB touched`);
    assert.ok((st.blocks ?? 0) * 512 < 4 << 20, `image occupies ${(st.blocks ?? 0) * 512}`);
    assert.equal(result.stats.imageBytes, st.size);
    await assertSelfCheckPasses(t, "sparse target after the dump");
  }),
);

/** The pid of a kernel thread visible here (PF_KTHREAD in /proc/<pid>/stat), if any. */
function kernelThreadPid(): number | undefined {
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
      const flags = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[6]);
      if (flags & 0x00200000) return Number(e.name);
    } catch { /* gone */ }
  }
  return undefined;
}

Deno.test(
  "errors: unknown pid, kernel thread, ancestor of cryo (CLI): one line, exit 1, nothing written",
  withTargets(async () => {
    const parent = await freshParent();
    const unknown = freePid();
    const dir = `${parent}/image`;
    // A kernel thread (kthreadd is pid 2 on a host; none is visible in a pid namespace, where pid 2
    // may be a thread of the test runner when the runner is pid 1).
    const kthreadPid = kernelThreadPid() ?? 2;
    const [none, kthread, ancestor] = await Promise.all([
      runCli(["dump", String(unknown), "--dir", dir]),
      runCli(["dump", String(kthreadPid), "--dir", dir]),
      runCli(["dump", String(Deno.pid), "--dir", dir]), // the test runs the CLI: an ancestor
    ]);
    assertOneLineError(none, 1, new RegExp(`no process with pid ${unknown}$`), "unknown pid");
    assertOneLineError(
      kthread,
      1,
      kernelThreadPid() === undefined
        ? /pid 2 is an ancestor of cryo$|no process with pid 2$|2 is a thread of process \d+; dump the process$/
        : new RegExp(`pid ${kthreadPid} is a kernel thread$`),
      "kernel thread",
    );
    assertOneLineError(
      ancestor,
      1,
      Deno.pid === 1 // the runner as pid 1 of a fresh pid namespace
        ? /pid 1 \(init\) cannot be checkpointed$/
        : new RegExp(`pid ${Deno.pid} is an ancestor of cryo$`),
      "ancestor",
    );
    assertDirHolds(parent, [], "after the failed dumps");
  }),
);

Deno.test(
  "errors: cryo itself and its ancestors (library): TargetError, nothing written",
  withTargets(async () => {
    const parent = await freshParent();
    const dir = `${parent}/image`;
    // In a fresh pid namespace the test runner may itself be pid 1 (its parent pid 0).
    const ppid = ppidOf(Deno.pid);
    const init = /^pid 1 (is an ancestor of cryo|is cryo itself|\(init\) cannot be checkpointed)$/;
    const cases: [number, RegExp][] = [
      ...(Deno.pid > 1 ? [[Deno.pid, new RegExp(`^pid ${Deno.pid} is cryo itself$`)]] : []),
      ...(ppid > 1 ? [[ppid, new RegExp(`^pid ${ppid} is an ancestor of cryo$`)]] : []),
      [1, init],
    ] as [number, RegExp][];
    for (const [pid, re] of cases) {
      await assert.rejects(checkpoint(pid, { dir }), (e: unknown) => {
        assert.ok(e instanceof TargetError, `pid ${pid}: ${e}`);
        assert.match(e.message, re);
        return true;
      });
      assertDirHolds(parent, [], `after dumping pid ${pid}`);
    }
  }),
);

Deno.test(
  "errors: a zombie (CLI): one line, exit 1, nothing written, still a zombie",
  withTargets(async () => {
    const parent = await freshParent();
    const t = await startTarget("/bin/true");
    await waitUntil("zombie", () => statusField(t.pid, "State").startsWith("Z"));
    const r = await runCli(["dump", String(t.pid), "--dir", `${parent}/image`]);
    assertOneLineError(r, 1, new RegExp(`pid ${t.pid} is a zombie$`), "zombie");
    assertDirHolds(parent, [], "after the failed dump");
    assert.match(statusField(t.pid, "State"), /^Z/, "still an unreaped zombie");
    const st = await t.wait();
    assert.deepEqual(st, { kind: "exited", pid: t.pid, code: 0 });
  }),
);

Deno.test(
  "errors: traced by another tracer, the process or one of its threads (CLI): the message names the tracer",
  withTargets(async () => {
    const parent = await freshParent();
    const { t, tids } = await startThreads(parent);
    const dir = `${parent}/image`;

    // The main thread is traced: refused before anything is stopped.
    const tracer1 = await startTarget("dump_tracer", [String(t.pid)]);
    await tracer1.waitFor(/^tracing /m);
    const r1 = await runCli(["dump", String(t.pid), "--dir", dir]);
    assertOneLineError(
      r1,
      1,
      new RegExp(`process ${t.pid} is already traced by pid ${tracer1.pid}$`),
      "traced process",
    );
    assertDirHolds(parent, ["three-pages"], "after the first failed dump");
    assertTracers(t.pid, (tid) => tid === t.pid ? tracer1.pid : 0, "traced process");
    await tracer1.kill();
    await waitUntil("untraced", () => Number(statusField(t.pid, "TracerPid")) === 0);

    // A worker thread is traced: found while freezing; what was stopped is let go.
    const worker = tids[3];
    const tracer2 = await startTarget("dump_tracer", [String(worker)]);
    await tracer2.waitFor(/^tracing /m);
    const r2 = await runCli(["dump", String(t.pid), "--dir", dir]);
    assertOneLineError(
      r2,
      1,
      new RegExp(`process ${worker} is already traced by pid ${tracer2.pid}$`),
      "traced thread",
    );
    assertDirHolds(parent, ["three-pages"], "after the second failed dump");
    assertTracers(t.pid, (tid) => tid === worker ? tracer2.pid : 0, "traced thread");
    await tracer2.kill();
    await waitUntil("untraced", () => Number(statusField(t.pid, "TracerPid", worker)) === 0);
    await assertSelfCheckPasses(t, "after two refused dumps");
  }),
);

Deno.test(
  "errors: no permission (CLI as uid 65534 on a root process): one line naming permission",
  withTargets(async () => {
    const parent = await freshParent();
    await Deno.chmod(parent, 0o777);
    const denoDir = await denoDirForNobody();
    const { t } = await startThreads(parent);
    const r = await runCli(["dump", String(t.pid), "--dir", `${parent}/image`], {
      wrapper: ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"],
      env: { DENO_DIR: denoDir },
    });
    assertOneLineError(r, 1, /permission/i, "no permission");
    assert.match(r.stderr, new RegExp(`\\b${t.pid}\\b`), "names the process");
    await assertRefusedCleanly(t, parent, ["three-pages"], "dump without permission");
  }),
);

Deno.test(
  "errors: restore without privileges (CLI as uid 65534): one line, exit 1, nothing created",
  withTargets(async () => {
    const parent = await freshParent();
    await Deno.chmod(parent, 0o777);
    const denoDir = await denoDirForNobody();
    const t = await startTarget("/bin/sleep", ["30"]);
    const dir = `${parent}/image`;
    await checkpoint(t.pid, { dir });
    await t.wait();
    await new Deno.Command("chmod", { args: ["-R", "a+rX", parent] }).output();
    const r = await runCli(["restore", dir], {
      wrapper: ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"],
      env: { DENO_DIR: denoDir },
    });
    assertOneLineError(r, 1, /cannot restore: needs CAP_SYS_PTRACE/, "restore without privileges");
    assert.ok(!pathExists(`/proc/${t.pid}`), "nothing was created with the dumped pid");
  }),
);

Deno.test(
  "errors: an fd cryo cannot restore (a removed device node) is listed; nothing written; the target runs on",
  withTargets(async () => {
    const parent = await freshParent();
    const input = `${parent}/input`;
    // A device node of its own (/dev/null's numbers), removed once opened: it cannot be made
    // again unlinked. (A removed directory was this test's case until cryo restored those.)
    const made = await new Deno.Command("mknod", { args: [input, "c", "1", "3"] }).output();
    assert.ok(made.success, "mknod");
    const t = await startTarget("/bin/sleep", ["30"], { stdin: input });
    await waitUntil("sleep started", () => pathExists(`/proc/${t.pid}/fd/0`));
    await waitUntil(
      "sleep exec'd",
      () => Deno.readLinkSync(`/proc/${t.pid}/exe`).endsWith("sleep"),
    );
    await Deno.remove(input);
    const r = await runCli(["dump", String(t.pid), "--dir", `${parent}/image`]);
    assertOneLineError(
      r,
      1,
      new RegExp(
        `process ${t.pid} fd 0 \\(${input} \\(deleted\\)\\): deleted special files \\(device nodes`,
      ),
      "removed device node",
    );
    assertDirHolds(parent, [], "after the failed dump");
    assertNotHeld(t.pid, "unsupported fd");
    assert.equal(t.poll(), undefined, "still running");
  }),
);

/** The clear message for a target that died while cryo dumped it. */
const diedMessage = (pid: number) =>
  new RegExp(`process ${pid}\\b.*\\b(died|killed|vanished|gone|exited)\\b`);

for (
  const [variant, precopy, at] of [
    ["SIGKILL at the first pages event", false, "pages"],
    // A pre-copied dump reads no page at its freeze when nothing was written since.
    ["pre-copied, SIGKILL once collected at the freeze", true, "process"],
  ] as const
) {
  Deno.test({
    name: `errors: the target dies mid-dump (library, ${variant}): one line, no directory`,
    fn: withTargets(async () => {
      const parent = await freshParent();
      const t = await startTarget("dump_memory", ["64", "all"]);
      await t.waitFor(/^ready /m);
      let killed = false;
      // Copied frozen (a fork snapshot's copy runs after the thaw: tests/fork_snapshot_test.ts).
      Deno.env.set("CRYO_FORK_SNAPSHOT", "0");
      await assertRejectsOneLine(
        checkpoint(t.pid, {
          dir: `${parent}/image`,
          leaveRunning: true,
          precopy,
          onEvent: (e) => {
            if (e.type === at && !killed) {
              killed = true;
              rawSyscall(SYS.kill, t.pid, SIGKILL);
            }
          },
        }),
        diedMessage(t.pid),
        "target killed mid-dump",
      ).finally(() => Deno.env.delete("CRYO_FORK_SNAPSHOT"));
      assert.ok(killed, `the ${at} event came`);
      await sleep(200); // any write still in flight surfaces
      assertDirHolds(parent, [], "after the failed dump");
      const st = await t.wait(5000);
      assert.equal(st.kind === "signaled" ? st.signal : st, SIGKILL);
    }),
  });
}

Deno.test({
  name:
    "errors: the target dies mid-dump (CLI, SIGKILL while 256 MiB stream): one line, exit 1, no directory",
  fn: withTargets(async () => {
    const parent = await freshParent();
    const t = await startTarget("dump_memory", ["256", "all"]);
    await t.waitFor(/^ready /m, 20000);
    const run = runCli(["dump", String(t.pid), "--dir", `${parent}/image`]);
    // Kill it once the partial image holds 32 MiB of pages.
    await waitUntil(
      "the dump streaming",
      () => {
        for (const d of Deno.readDirSync(parent)) {
          if (!d.name.includes("cryo-partial")) continue;
          for (const f of Deno.readDirSync(`${parent}/${d.name}`)) {
            if (Deno.statSync(`${parent}/${d.name}/${f.name}`).size > 32 << 20) return true;
          }
        }
        return false;
      },
      20000,
    );
    rawSyscall(SYS.kill, t.pid, SIGKILL);
    const r = await run;
    assertOneLineError(r, 1, diedMessage(t.pid), "target killed mid-dump");
    assertDirHolds(parent, [], "after the failed dump");
    const st = await t.wait(5000);
    assert.equal(st.kind === "signaled" ? st.signal : st, SIGKILL);
  }),
});

Deno.test(
  "errors: the directory exists and is not empty, or is a file (CLI): nothing touched",
  withTargets(async () => {
    const parent = await freshParent();
    const t = await startTarget("dump_memory", ["4", "all"]);
    await t.waitFor(/^ready /m);
    const full = `${parent}/full`;
    await Deno.mkdir(full);
    await Deno.writeTextFile(`${full}/keep.txt`, "precious");
    await Deno.writeTextFile(`${parent}/afile`, "file");
    const [r1, r2] = await Promise.all([
      runCli(["dump", String(t.pid), "--dir", full]),
      runCli(["dump", String(t.pid), "--dir", `${parent}/afile`]),
    ]);
    assertOneLineError(r1, 1, /already exists and is not empty$/, "non-empty directory");
    assertOneLineError(r2, 1, /exists and is not a directory$/, "a file");
    assertDirHolds(full, ["keep.txt"], "the existing directory");
    assert.equal(await Deno.readTextFile(`${full}/keep.txt`), "precious");
    assert.equal(await Deno.readTextFile(`${parent}/afile`), "file");
    await assertRefusedCleanly(
      t,
      parent,
      ["afile", "full"],
      "dumps into a non-empty dir or a file",
    );
  }),
);

Deno.test(
  "errors: disk full (1 MiB tmpfs, 8 MiB of memory) (CLI): one line, nothing left, the target runs on",
  withTargets(async () => {
    const mnt = await freshParent();
    const mount = await new Deno.Command("mount", {
      args: ["-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt],
    }).output();
    assert.ok(mount.success, new TextDecoder().decode(mount.stderr));
    try {
      const t = await startTarget("dump_memory", ["8", "all"]);
      await t.waitFor(/^ready /m);
      const r = await runCli(["dump", String(t.pid), "--dir", `${mnt}/image`]);
      assertOneLineError(r, 1, /no space left on device/i, "disk full");
      await assertRefusedCleanly(t, mnt, [], "dump that ran out of space");
    } finally {
      await new Deno.Command("umount", { args: [mnt] }).output();
    }
  }),
);
