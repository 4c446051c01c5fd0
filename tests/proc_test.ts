/**
 * Tests of the /proc readers (engine/proc) against a real process,
 * tests/targets/procinfo.c, which reports facts about itself.
 */

import assert from "node:assert/strict";
import { factBigInt, factNumber, targetFacts } from "./helpers/checks.ts";
import { freePid } from "./helpers/proc.ts";
import { startTarget, type Target, withTargets } from "./helpers/targets.ts";
import { waitUntil } from "./helpers/wait.ts";
import { rawSyscall } from "../ffi/libc.ts";
import { SYS } from "../ffi/sysno.ts";
import { clockNowNs } from "../ffi/clock.ts";
import { parseSmaps } from "../engine/proc/smaps.ts";
import { parseSmapsFlags } from "../engine/proc/smaps_flags.ts";
import {
  ANON_PRESENT_OR_SWAPPED,
  AT,
  auxvValue,
  classifyFd,
  epollTargets,
  eventfdCount,
  extraList,
  inotifyWatches,
  isKernelThread,
  listDescendants,
  listFds,
  listTids,
  liveness,
  mergeSmaps,
  mmFieldsOf,
  openPagemap,
  PAGE_SIZE,
  pageRuns,
  parseFdInfo,
  parseStat,
  PM,
  PRESENT_OR_SWAPPED,
  ProcEntryNotFoundError,
  ProcessGoneError,
  ProcPermissionError,
  readAuxv,
  readChildren,
  readCmdline,
  readComm,
  readCwd,
  readEnviron,
  readExe,
  readExeIdentity,
  readFd,
  readFdInfo,
  readFds,
  readLimits,
  readMapFileIdentity,
  readMaps,
  readMountInfo,
  readPagemap,
  readPersonality,
  readRoot,
  readSmaps,
  readStat,
  readStatus,
  readTaskChildren,
  readTimerslackNs,
  sigmaskHas,
  signalfdMask,
  timerfdState,
  translateProcError,
} from "../engine/proc/mod.ts";

/** clock_gettime clock: CPU time of the calling thread. */
const CLOCK_THREAD_CPUTIME_ID = 3;

type Facts = Record<string, string>;

const assertEquals = <T>(actual: unknown, expected: T, msg?: string) =>
  assert.deepStrictEqual(actual, expected, msg);

/** Asserts that `fn` throws an instance of `type` and returns the error. */
function assertThrows<E extends Error>(
  fn: () => unknown,
  type: abstract new (...args: never[]) => E,
): E {
  try {
    fn();
  } catch (err) {
    assert(err instanceof type, `expected ${type.name}, got ${String(err)}`);
    return err;
  }
  throw new assert.AssertionError({ message: `expected ${type.name}, nothing was thrown` });
}

function waitGone(pid: number): Promise<void> {
  return waitUntil(`pid ${pid} to go away`, () => liveness(pid) === "gone", 5000);
}

/** Starts procinfo and returns it with its facts; `cleanup` kills its descendants and files. */
async function startProcinfo(): Promise<{ t: Target; f: Facts; cleanup: () => Promise<void> }> {
  const t = await startTarget("procinfo");
  await t.waitFor(/^ready$/m);
  await t.waitFor(/^grandchild=\d+$/m);
  const f = targetFacts(t);
  assert(f.error === undefined, `procinfo failed: ${f.error}`);
  const cleanup = async () => {
    // Both ignore SIGCHLD, so the kernel reaps each as soon as it dies.
    for (const k of ["grandchild", "child"]) {
      const pid = Number(f[k]);
      if (pid > 0 && liveness(pid) !== "gone") {
        rawSyscall(SYS.kill, pid, 9);
        await waitGone(pid).catch(() => {});
      }
    }
    for (const ext of ["map", "dat", "fifo", "del"]) {
      try {
        Deno.removeSync(`/tmp/cryo-procinfo-${t.pid}.${ext}`);
      } catch { /* absent */ }
    }
  };
  return { t, f, cleanup };
}

Deno.test(
  "proc readers match what procinfo reports about itself",
  async (t) => {
    await withTargets(async () => {
      const { t: target, f, cleanup } = await startProcinfo();
      const pid = target.pid;
      try {
        await t.step("stat", () => {
          const st = readStat(pid);
          assertEquals(st.pid, pid);
          assertEquals(st.comm, "x) (y z)");
          assertEquals(st.ppid, factNumber(f, "ppid"));
          assertEquals(st.pgrp, factNumber(f, "pgrp"));
          assertEquals(st.session, factNumber(f, "sid"));
          assertEquals(st.numThreads, 2);
          assert("SR".includes(st.state), `state ${st.state}`);
          assert(st.starttime > 0);
          const main = factBigInt(f, "main_addr");
          assert(st.startCode <= main && main < st.endCode, "main() inside start_code..end_code");
          assert(factBigInt(f, "stack_addr") < st.startStack, "a local lies below start_stack");
          const argv0 = factBigInt(f, "argv0_addr");
          assert(st.argStart <= argv0 && argv0 < st.argEnd, "argv[0] inside arg_start..arg_end");
          const env0 = factBigInt(f, "env0_addr");
          assert(st.envStart <= env0 && env0 < st.envEnd, "environ[0] inside env_start..env_end");
          assert(st.startData > 0n && st.startData <= st.endData);
          assert(st.startBrk > 0n && st.startBrk <= factBigInt(f, "brk"));
          assertEquals(st.exitCode, 0);
          const mm = mmFieldsOf(st, factBigInt(f, "brk"));
          assertEquals(BigInt(mm.brk), factBigInt(f, "brk"));
          assertEquals(BigInt(mm.startStack), st.startStack);
          const th = readStat(pid, factNumber(f, "thread_tid"));
          assertEquals(th.pid, factNumber(f, "thread_tid"));
          assertEquals(th.comm, "procinfo-work");
        });

        await t.step("status", () => {
          const s = readStatus(pid);
          assertEquals(s.name, "x) (y z)");
          assertEquals(s.umask, 0o027);
          assertEquals(s.tgid, pid);
          assertEquals(s.pid, pid);
          assertEquals(s.ppid, factNumber(f, "ppid"));
          assertEquals(s.tracerPid, 0);
          assertEquals(s.uid, [0, 0, 0, 0]);
          assertEquals(s.gid, [0, 0, 0, 0]);
          assertEquals(s.groups, [5, 7]);
          assertEquals(s.nspid, [pid]);
          assertEquals(s.nstgid, [pid]);
          assertEquals(s.threads, 2);
          assert(sigmaskHas(s.sigBlk, 10), "SIGUSR1 blocked");
          assertEquals(s.sigIgn, (1n << 11n) | (1n << 16n)); // SIGUSR2, SIGCHLD
          assert(sigmaskHas(s.sigCgt, 15), "SIGTERM caught");
          assertEquals(s.sigPnd, 0n);
          assertEquals(s.shdPnd, 0n);
          assert(s.capEff !== 0n && s.capBnd !== 0n);
          assertEquals(s.capAmb, 0n);
          assertEquals(s.noNewPrivs, false);
          assertEquals(s.seccomp, 0);
          assert(s.kthread === null || s.kthread === false);
          assertEquals(isKernelThread(pid), false);
          const th = readStatus(pid, factNumber(f, "thread_tid"));
          assertEquals(th.pid, factNumber(f, "thread_tid"));
          assertEquals(th.tgid, pid);
        });

        await t.step("misc: cwd, root, exe, cmdline, environ, comm, personality", () => {
          assertEquals(readCwd(pid), f.cwd);
          assertEquals(readRoot(pid), "/");
          const exe = readExe(pid);
          assert(exe.includes("procinfo"), exe);
          const id = readExeIdentity(pid);
          const st = Deno.statSync(exe);
          assertEquals([id.path, id.dev, id.ino, id.size], [exe, st.dev, st.ino, st.size]);
          assertEquals(readCmdline(pid), [exe]);
          const env = readEnviron(pid);
          assert(env.length > 0 && env.every((e) => e.includes("=")), "environ entries");
          assertEquals(readComm(pid), "x) (y z)");
          assertEquals(readComm(pid, factNumber(f, "thread_tid")), "procinfo-work");
          assertEquals(readPersonality(pid), Number(f.personality));
          assert(readTimerslackNs(pid) > 0);
        });

        await t.step("auxv", () => {
          const aux = readAuxv(pid);
          assertEquals(auxvValue(aux, AT.PAGESZ), factBigInt(f, "at_pagesz"));
          assertEquals(auxvValue(aux, AT.ENTRY), factBigInt(f, "at_entry"));
          assertEquals(auxvValue(aux, AT.PHDR), factBigInt(f, "at_phdr"));
          assertEquals(auxvValue(aux, AT.RANDOM), factBigInt(f, "at_random"));
          assert(aux.every(([type]) => type !== AT.NULL));
        });

        await t.step("maps and smaps", () => {
          const maps = readMaps(pid);
          const find = (a: bigint) => maps.find((m) => m.start <= a && a < m.end);
          const pattern = find(factBigInt(f, "pattern_addr"))!;
          assert(pattern, "pattern region mapped");
          assertEquals(pattern.perms, "rw-p");
          assertEquals(pattern.inode, 0);
          assertEquals(pattern.path, "");
          const res = find(factBigInt(f, "reserve_addr"))!;
          assertEquals(res.start, factBigInt(f, "reserve_addr"));
          assertEquals(res.end - res.start, factBigInt(f, "reserve_len"));
          const fm = find(factBigInt(f, "filemap_addr"))!;
          assertEquals(fm.path, f.filemap_path);
          assertEquals(fm.perms, "rw-p");
          assertEquals(fm.offset, 0n);
          const st = Deno.statSync(f.filemap_path);
          assertEquals(fm.inode, st.ino);
          assert(/^[0-9a-f]+:[0-9a-f]+$/.test(fm.dev), fm.dev);
          const id = readMapFileIdentity(pid, fm)!;
          assertEquals([id.ino, id.dev, id.size], [st.ino, st.dev, st.size]);
          assertEquals(readMapFileIdentity(pid, pattern), null);
          assert(maps.some((m) => m.path === "[stack]"));
          assert(maps.some((m) => m.path === "[vdso]"));
          assert(maps.some((m) => m.path === "[heap]"));

          const smaps = readSmaps(pid);
          const merged = mergeSmaps(maps, smaps, pid);
          assertEquals(merged.length, maps.length);
          const mp = merged.find((m) => m.start === pattern.start)!;
          assertEquals(mp.rss, 4 * PAGE_SIZE);
          assertEquals(mp.anonymous, 4 * PAGE_SIZE);
          assertEquals(mp.swap, 0);
          assert(mp.vmFlags.includes("rd") && mp.vmFlags.includes("wr"), mp.vmFlags.join(" "));
          assert(mp.vmFlags.includes("nh"), "MADV_NOHUGEPAGE shows as nh");
          const mr = merged.find((m) => m.start === res.start)!;
          assertEquals(mr.rss, 12 * PAGE_SIZE);
          assert(mr.vmFlags.includes("nr"), "MAP_NORESERVE shows as nr");
          const mf = merged.find((m) => m.start === fm.start)!;
          assertEquals(mf.anonymous, PAGE_SIZE);
          assertEquals(smaps.find((s) => s.start === pattern.start)!.sizes.Size, 4 * PAGE_SIZE);
          // The dump's reader gives the same headers and VmFlags as the full parse.
          const text = Deno.readTextFileSync(`/proc/${pid}/smaps`);
          assertEquals(
            parseSmapsFlags(text, pid),
            parseSmaps(text, pid).map((
              { sizes: _s, values: _v, rss: _r, anonymous: _a, swap: _w, ...rest },
            ) => rest),
          );
        });

        await t.step("pagemap: bulk read, bits and runs", () => {
          const pat = factBigInt(f, "pattern_addr");
          const e = readPagemap(pid, pat, pat + 4n * BigInt(PAGE_SIZE));
          // Soft-dirty bits exist only with CONFIG_MEM_SOFT_DIRTY (VmFlags "sd").
          const softDirty = readSmaps(pid).some((s) => s.vmFlags.includes("sd"));
          assertEquals(e.length, 4);
          for (let i = 0; i < 4; i++) {
            assert(e.present(i) && !e.swapped(i) && !e.fileOrSharedAnon(i), `pattern page ${i}`);
            assert(e.exclusive(i), `pattern page ${i} exclusive`);
            assertEquals(e.softDirty(i), softDirty, `pattern page ${i} soft-dirty`);
            assert(e.pfn(i) > 0, "PFN visible to root");
            assertEquals(BigInt(e.pfn(i)), e.entry(i) & ((1n << 55n) - 1n));
          }
          assertEquals(e.address(3), pat + 3n * BigInt(PAGE_SIZE));

          const res = factBigInt(f, "reserve_addr");
          const len = factBigInt(f, "reserve_len");
          const touched = factBigInt(f, "touched_addr");
          const untouched = factBigInt(f, "untouched_addr");
          const one = readPagemap(pid, untouched, untouched + 1n);
          assertEquals(one.length, 1);
          assert(!one.present(0) && !one.swapped(0));

          // CPU time of this thread (the scan is synchronous), not wall time of a loaded machine.
          const t0 = clockNowNs(CLOCK_THREAD_CPUTIME_ID);
          const runs = pageRuns(pid, res, res + len, ANON_PRESENT_OR_SWAPPED);
          const ms = Number(clockNowNs(CLOCK_THREAD_CPUTIME_ID) - t0) / 1e6;
          assertEquals(runs, [
            [res, PAGE_SIZE],
            [touched, 10 * PAGE_SIZE],
            [res + len - BigInt(PAGE_SIZE), PAGE_SIZE],
          ]);
          assert(ms < 3000, `8 GiB pagemap scan took ${ms.toFixed(0)} ms of CPU`);

          using reader = openPagemap(pid);
          // Function predicates see the high and low words.
          const fnRuns = reader.runs(res, res + len, (hi) => (hi & PM.PRESENT) !== 0);
          assertEquals(fnRuns, runs);
          assertEquals(reader.countPages(res, res + len, PRESENT_OR_SWAPPED), 12);
          // A chunk boundary inside a run: pages 1000..1009 across a 1003-page window start.
          const start = touched + 3n * BigInt(PAGE_SIZE);
          assertEquals(reader.runs(start, start + 2n * BigInt(PAGE_SIZE), PRESENT_OR_SWAPPED), [
            [start, 2 * PAGE_SIZE],
          ]);

          // Private file mapping: page 0 is a file page, page 1 was COW'd.
          const fm = factBigInt(f, "filemap_addr");
          const fe = reader.read(fm, fm + 2n * BigInt(PAGE_SIZE));
          assert(fe.present(0) && fe.fileOrSharedAnon(0), "read file page");
          assert(fe.present(1) && !fe.fileOrSharedAnon(1), "COW'd page is anonymous");
          assertEquals(reader.runs(fm, fm + 3n * BigInt(PAGE_SIZE), ANON_PRESENT_OR_SWAPPED), [
            [fm + BigInt(PAGE_SIZE), PAGE_SIZE],
          ]);
          // Above user space the kernel returns nothing: zero entries, no error.
          const vsys = readPagemap(pid, 0xffffffffff600000n, 0xffffffffff601000n);
          assertEquals(vsys.length, 1);
          assertEquals(vsys.hi(0), 0);
        });

        await t.step("tasks and children", () => {
          assertEquals(listTids(pid), [pid, factNumber(f, "thread_tid")].sort((a, b) => a - b));
          assertEquals(readTaskChildren(pid, pid), [factNumber(f, "child")]);
          assertEquals(readTaskChildren(pid, factNumber(f, "thread_tid")), []);
          assertEquals(readChildren(pid), [factNumber(f, "child")]);
          const tree = listDescendants(pid);
          assertEquals([...tree.entries()], [
            [pid, [factNumber(f, "child")]],
            [factNumber(f, "child"), [factNumber(f, "grandchild")]],
            [factNumber(f, "grandchild"), []],
          ]);
        });

        await t.step("fds: targets, fdinfo and kinds", () => {
          const fds = readFds(pid);
          assertEquals(fds.map((d) => d.fd), listFds(pid));
          const by = (k: string) => {
            const d = fds.find((x) => x.fd === factNumber(f, k));
            assert(d, `fd ${k} listed`);
            return d;
          };

          const file = by("file_fd");
          assertEquals([file.kind, file.target, file.deleted], ["file", f.file_path, false]);
          assertEquals(file.info.pos, factNumber(f, "file_pos"));
          assertEquals(file.info.flags & 3, 2); // O_RDWR
          assertEquals(file.info.cloexec, false);
          const st = Deno.statSync(f.file_path);
          assertEquals(file.file, {
            path: f.file_path,
            dev: st.dev,
            ino: st.ino!,
            size: 8192,
            mtimeMs: st.mtime!.getTime(),
          });
          assertEquals(file.info.ino, st.ino);
          const mounts = readMountInfo(pid);
          assert(mounts.some((m) => m.mountId === file.info.mntId), "mnt_id is in mountinfo");

          const dir = by("dir_fd");
          assertEquals([dir.kind, dir.target, dir.info.cloexec], ["directory", "/", true]);

          const del = by("deleted_fd");
          assertEquals([del.kind, del.deleted, del.path], ["file", true, f.deleted_path]);
          assertEquals(del.stat.nlink, 0);

          const ev = by("eventfd_fd");
          assertEquals([ev.kind, ev.anonName], ["eventfd", "eventfd"]);
          assertEquals(eventfdCount(ev.info), BigInt(f.eventfd_count));
          assert((ev.info.flags & 0o4000) !== 0, "O_NONBLOCK");

          const pr = by("pipe_r");
          const pw = by("pipe_w");
          assertEquals([pr.kind, pw.kind], ["pipe", "pipe"]);
          assertEquals(pr.target, `pipe:[${f.pipe_ino}]`);
          assertEquals(pr.stat.ino, factNumber(f, "pipe_ino"));
          assertEquals([pr.info.flags & 3, pw.info.flags & 3], [0, 1]);

          const ep = by("epoll_fd");
          assertEquals(ep.kind, "epoll");
          const targets = epollTargets(ep.info);
          assertEquals(targets.length, 1);
          assertEquals(targets[0].tfd, factNumber(f, "eventfd_fd"));
          assertEquals(targets[0].data, BigInt(f.epoll_data));
          assertEquals(targets[0].events & 1, 1); // EPOLLIN
          assert(Array.isArray(ep.info.extra.tfd), "tfd kept as an array");

          const tfd = by("timerfd_fd");
          assertEquals(tfd.kind, "timerfd");
          const ts = timerfdState(tfd.info)!;
          assertEquals(ts.clockid, 1); // CLOCK_MONOTONIC
          assertEquals(ts.intervalNs, 5_000_000_000n);
          assert(ts.valueNs > 900_000_000_000n && ts.valueNs <= 1_000_000_000_000n, "it_value");

          const sfd = by("signalfd_fd");
          assertEquals(sfd.kind, "signalfd");
          assertEquals(signalfdMask(sfd.info), 1n << 9n); // SIGUSR1

          const ino = by("inotify_fd");
          assertEquals(ino.kind, "inotify");
          const watches = inotifyWatches(ino.info);
          assertEquals(watches.map((w) => [w.wd, w.ino, w.mask]), [
            [factNumber(f, "inotify_wd"), Deno.statSync("/tmp").ino, 0x100],
          ]);
          assertEquals(extraList(ino.info, "inotify").length, 1);

          const memfd = by("memfd_fd");
          assertEquals([memfd.kind, memfd.deleted, memfd.path], [
            "memfd",
            true,
            "/memfd:cryo-memfd",
          ]);

          assertEquals(by("pidfd_fd").kind, "pidfd");
          assertEquals(by("socket_fd").kind, "socket");
          const nul = by("null_fd");
          assertEquals([nul.kind, nul.target], ["chardev", "/dev/null"]);
          if (factNumber(f, "ptmx_fd") >= 0) {
            const ptmx = by("ptmx_fd");
            assertEquals(ptmx.kind, "tty");
            assert(ptmx.info.extra["tty-index"] !== undefined, "tty-index in extra");
          }
          const fifo = by("fifo_fd");
          assertEquals([fifo.kind, fifo.deleted], ["fifo", false]);
          if (factNumber(f, "fanotify_fd") >= 0) assertEquals(by("fanotify_fd").kind, "fanotify");

          assertEquals(readFdInfo(pid, factNumber(f, "file_fd")).pos, 1234);
          assertEquals(readFd(pid, factNumber(f, "dir_fd")).kind, "directory");
          assertThrows(() => readFd(pid, 9999), ProcEntryNotFoundError);
        });

        await t.step("limits", () => {
          const lim = readLimits(pid);
          assertEquals(lim.map((l) => l.resource), [...Array(16).keys()]);
          assertEquals(lim[7], { resource: 7, name: "NOFILE", soft: 123, hard: 456 });
          const [soft, hard] = f.rlimit_stack.split("/").map((v) =>
            v === "18446744073709551615" ? "inf" : Number(v)
          );
          assertEquals([lim[3].name, lim[3].soft, lim[3].hard], ["STACK", soft, hard]);
          assertEquals(lim[0].name, "CPU");
          assertEquals(lim[15].name, "RTTIME");
        });

        await t.step("mountinfo", () => {
          const mounts = readMountInfo(pid);
          const proc = mounts.find((m) => m.mountPoint === "/proc");
          assert(proc, "/proc is mounted");
          assertEquals(proc.fsType, "proc");
          assert(mounts.some((m) => m.mountPoint === "/"), "a root mount");
          for (const m of mounts) {
            assert(Number.isInteger(m.mountId) && Number.isInteger(m.major), "numeric ids");
            assert(m.mountOptions.includes("rw") || m.mountOptions.includes("ro"));
          }
        });
      } finally {
        await cleanup();
      }
    })();
  },
);

Deno.test("ProcessGoneError for a pid that does not exist", () => {
  const pid = freePid();
  for (
    const read of [
      () => readStat(pid),
      () => readStatus(pid),
      () => readMaps(pid),
      () => readSmaps(pid),
      () => readAuxv(pid),
      () => readCwd(pid),
      () => readCmdline(pid),
      () => listFds(pid),
      () => readFds(pid),
      () => listTids(pid),
      () => readChildren(pid),
      () => listDescendants(pid),
      () => readLimits(pid),
      () => readMountInfo(pid),
      () => pageRuns(pid, 0x400000n, 0x800000n, PRESENT_OR_SWAPPED),
    ]
  ) {
    const err = assertThrows(read, ProcessGoneError);
    assertEquals(err.pid, pid);
    assertEquals(err.zombie, false);
  }
});

Deno.test(
  "ProcessGoneError for a process that exited (zombie, then reaped)",
  withTargets(async () => {
    const t = await startTarget("procinfo", ["exit"]);
    await t.waitFor(/^exiting pid=\d+$/m);
    // Not reaped yet: wait for the zombie (stat stays readable and says Z).
    await waitUntil("the target to become a zombie", () => readStat(t.pid).state === "Z", 5000);
    assertEquals(readStat(t.pid).exitCode, 3 << 8);
    assertEquals(liveness(t.pid), "zombie");
    for (
      const read of [
        () => readMaps(t.pid),
        () => readAuxv(t.pid),
        () => readCwd(t.pid),
        () => readExe(t.pid),
        () => readCmdline(t.pid),
        () => listFds(t.pid),
        () => readMountInfo(t.pid),
        () => pageRuns(t.pid, 0x400000n, 0x800000n, PRESENT_OR_SWAPPED),
      ]
    ) {
      const err = assertThrows(read, ProcessGoneError);
      assertEquals([err.pid, err.zombie], [t.pid, true]);
    }
    // Reaped: everything is gone.
    const st = await t.wait();
    assertEquals(st, { kind: "exited", pid: t.pid, code: 3 });
    for (const read of [() => readStat(t.pid), () => readStatus(t.pid), () => readFds(t.pid)]) {
      const err = assertThrows(read, ProcessGoneError);
      assertEquals([err.pid, err.zombie], [t.pid, false]);
    }
  }),
);

Deno.test("kernel threads are recognised", () => {
  let comm = "";
  try {
    comm = Deno.readTextFileSync("/proc/2/comm").trim();
  } catch { /* no pid 2 */ }
  if (comm === "kthreadd") {
    assertEquals(isKernelThread(2), true);
    assertEquals(readMaps(2), []);
    assertEquals(readCmdline(2), []);
  }
  assertEquals(isKernelThread(Deno.pid), false);
});

Deno.test("error translation and pure parsers", () => {
  const denied = translateProcError(new Deno.errors.PermissionDenied("x"), 1, "/proc/1/mem");
  assert(denied instanceof ProcPermissionError);
  assertEquals(denied.pid, 1);

  const st = parseStat(
    "42 (a) b) (c) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 99 1000 10 " +
      "18446744073709551615 4096 8192 140000 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 " +
      "12288 16384 20480 24576 24600 24600 24650 0\n",
  );
  assertEquals([st.pid, st.comm, st.state, st.ppid, st.numThreads], [42, "a) b) (c", "S", 1, 1]);
  assertEquals([st.startCode, st.endCode, st.startBrk, st.envEnd], [4096n, 8192n, 20480n, 24650n]);
  assertEquals(st.rsslim, 18446744073709551615n);

  const info = parseFdInfo(
    "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t7\n" +
      "tfd:        5 events:       19 data:                5  pos:0 ino:ac1 sdev:f\n" +
      "tfd:        6 events:        1 data:               ff  pos:0 ino:ac2 sdev:f\n" +
      "settime flags: 01\n",
  );
  assertEquals([info.flags, info.cloexec, info.mntId, info.ino], [0o2000002, true, 15, 7]);
  assertEquals(epollTargets(info).map((x) => [x.tfd, x.events, x.data, x.ino]), [
    [5, 0x19, 5n, 0xac1],
    [6, 1, 0xffn, 0xac2],
  ]);
  assertEquals(info.extra["settime flags"], "01");

  assertEquals(classifyFd("/x (deleted)", null), { kind: "unknown", deleted: true, path: "/x" });
  assertEquals(classifyFd("anon_inode:[io_uring]", null).kind, "anon");
  assertEquals(classifyFd("net:[4026531833]", null).kind, "unknown");
});
