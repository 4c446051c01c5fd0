/**
 * Tests of `cryo check` at engine level (engine/check.ts) and of the
 * low-level probes (ffi/probe.ts), on this machine: every required feature
 * must be there (we run as root on 6.18), the report must agree with what
 * /proc says, and the throw-away tracee must be gone afterwards.
 *
 * @module
 */

import assert from "node:assert/strict";
import { capabilityNames, checkHost, type CheckReport } from "../engine/check.ts";
import { errnoName } from "../ffi/errno.ts";
import { rawSyscall } from "../ffi/libc.ts";
import {
  clone3SetTidInUse,
  closeFd,
  memfdCreate,
  PAGE_IS,
  pagemapScanPid,
  pidfdOpen,
  prctlMmMapSize,
  UFFD_FEATURE,
  userfaultfdApi,
} from "../ffi/probe.ts";
import { prctlMmMap } from "../ffi/structs.ts";
import { SYS } from "../ffi/sysno.ts";
import { startPaused } from "./helpers/kill_anywhere.ts";
import { deadlineIn } from "./helpers/wait.ts";

const REQUIRED = [
  "Linux x86-64",
  "ptrace seize/interrupt",
  "process_vm_readv",
  "syscall injection",
  "clone3 set_tid",
  "PR_SET_MM_MAP",
  "vvar/vdso mremap",
];

let cached: CheckReport | undefined;
function report(): CheckReport {
  cached ??= checkHost();
  return cached;
}

function rowOf(r: CheckReport, feature: string) {
  const row = r.rows.find((x) => x.feature === feature);
  assert.ok(row, `no row ${feature}; rows: ${r.rows.map((x) => x.feature).join(", ")}`);
  return row;
}

Deno.test("check: every required feature is present on this machine", () => {
  const r = report();
  const required = r.rows.filter((x) => x.required).map((x) => x.feature);
  assert.deepEqual(required, REQUIRED);
  for (const row of r.rows.filter((x) => x.required)) {
    assert.ok(row.ok, `${row.feature}: ${row.detail}`);
  }
  assert.equal(r.ready, true);
});

Deno.test("check: rows are complete and self-describing", () => {
  for (const row of report().rows) {
    assert.equal(typeof row.ok, "boolean");
    assert.ok(row.detail.length > 0, `${row.feature} has no detail`);
    assert.ok(row.enables.length > 0, `${row.feature} says nothing about what it enables`);
  }
  for (
    const f of [
      "userfaultfd",
      "UFFD_FEATURE_WP_ASYNC",
      "PAGEMAP_SCAN",
      "memfd_create",
      "pidfd_open",
      "TCP repair",
      "PR_TIMER_CREATE_RESTORE_IDS",
      "TFD_IOC_SET_TICKS",
      "Yama ptrace_scope",
      "ns_last_pid writable",
      "CAP_SYS_PTRACE",
      "CAP_CHECKPOINT_RESTORE",
      "CAP_SYS_RESOURCE",
    ]
  ) rowOf(report(), f);
});

Deno.test("check: the timer restore features of this kernel (6.18) are found", () => {
  // PR_TIMER_CREATE_RESTORE_IDS is in Linux 6.14+, TFD_IOC_SET_TICKS with CHECKPOINT_RESTORE.
  for (const f of ["PR_TIMER_CREATE_RESTORE_IDS", "TFD_IOC_SET_TICKS"]) {
    const row = rowOf(report(), f);
    assert.ok(row.ok, `${f}: ${row.detail}`);
  }
});

Deno.test("check: vdso layout matches /proc/self/maps", () => {
  const maps = Deno.readTextFileSync("/proc/self/maps").split("\n");
  const expected = maps.map((l) => l.split(/\s+/)).filter((f) =>
    ["[vvar]", "[vvar_vclock]", "[vdso]"].includes(f[5])
  ).map((f) => {
    const [s, e] = f[0].split("-").map((x) => parseInt(x, 16));
    return { name: f[5], size: e - s };
  });
  assert.ok(expected.some((m) => m.name === "[vdso]"));
  assert.deepEqual(report().vdso, expected);
  const moved = rowOf(report(), "vvar/vdso mremap");
  for (const m of expected) assert.match(moved.detail, new RegExp(`\\${m.name.slice(0, -1)}\\]`));
});

Deno.test("check: the probe tracee is killed and reaped", () => {
  const m = rowOf(report(), "ptrace seize/interrupt").detail.match(/pid (\d+)/);
  assert.ok(m, "ptrace detail names the tracee pid");
  const pid = Number(m[1]);
  assert.notEqual(pid, Deno.pid);
  let state = "gone";
  try {
    state = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1][0];
  } catch (e) {
    assert.ok(e instanceof Deno.errors.NotFound);
  }
  // The pid may have been reused by an unrelated process, but never by our zombie.
  assert.notEqual(state, "Z", `probe tracee ${pid} left as a zombie`);
  if (state !== "gone") {
    const cmd = Deno.readTextFileSync(`/proc/${pid}/cmdline`);
    assert.notEqual(cmd, "sleep\x0030\x00", `probe tracee ${pid} still runs`);
  }
});

Deno.test("check: capabilities agree with /proc/self/status", () => {
  const status = Deno.readTextFileSync("/proc/self/status");
  const capEff = BigInt(`0x${status.match(/^CapEff:\s*([0-9a-f]+)/m)![1]}`);
  const r = report();
  assert.deepEqual(r.capabilities, capabilityNames(capEff));
  for (const cap of ["CAP_SYS_PTRACE", "CAP_SYS_RESOURCE", "CAP_CHECKPOINT_RESTORE"]) {
    assert.equal(rowOf(r, cap).ok, r.capabilities.includes(cap), cap);
  }
  const lacksResource = !r.capabilities.includes("CAP_SYS_RESOURCE");
  assert.equal(
    r.limitations.some((l) => l.startsWith("without CAP_SYS_RESOURCE:")),
    lacksResource,
  );
  assert.equal(r.uid, Number(status.match(/^Uid:\s*(\d+)/m)![1]));
});

Deno.test("check: capability names decode by bit", () => {
  assert.deepEqual(capabilityNames(0n), []);
  assert.deepEqual(capabilityNames(1n << 19n), ["CAP_SYS_PTRACE"]);
  assert.deepEqual(capabilityNames((1n << 40n) | 1n), ["CAP_CHOWN", "CAP_CHECKPOINT_RESTORE"]);
  assert.deepEqual(capabilityNames(1n << 45n), ["CAP_45"]);
});

Deno.test("probe: clone3 set_tid of our own pid fails with EEXIST and creates nothing", () => {
  const r = clone3SetTidInUse();
  assert.equal(errnoName(Number(-r)), "EEXIST");
});

Deno.test("probe: PR_SET_MM_MAP_SIZE is cryo's struct prctl_mm_map size", () => {
  assert.equal(prctlMmMapSize(), BigInt(prctlMmMap.size));
});

Deno.test("probe: PAGEMAP_SCAN reports exactly the touched pages of a fresh mapping", () => {
  const page = 4096n;
  const addr = rawSyscall(SYS.mmap, 0, 4n * page, 3, 0x22, -1, 0);
  assert.ok(addr > 0n, `mmap: ${addr}`);
  try {
    const mem = new Uint8Array(
      Deno.UnsafePointerView.getArrayBuffer(Deno.UnsafePointer.create(addr)!, Number(4n * page)),
    );
    mem[0] = 1; // page 0
    mem[Number(2n * page) + 7] = 1; // page 2
    const r = pagemapScanPid(Deno.pid, {
      start: addr,
      end: addr + 4n * page,
      anyOf: PAGE_IS.PRESENT,
      returnMask: PAGE_IS.PRESENT,
    });
    assert.equal(r.error, 0n);
    assert.deepEqual(r.regions, [
      { start: addr, end: addr + page, categories: PAGE_IS.PRESENT },
      { start: addr + 2n * page, end: addr + 3n * page, categories: PAGE_IS.PRESENT },
    ]);
  } finally {
    rawSyscall(SYS.munmap, addr, 4n * page);
  }
});

Deno.test("probe: userfaultfd API reports WP_ASYNC and rejects unknown features", () => {
  const all = userfaultfdApi(0n);
  assert.equal(all.error, 0n);
  assert.ok(all.features & UFFD_FEATURE.WP_ASYNC);
  const bogus = userfaultfdApi(1n << 62n);
  assert.equal(errnoName(Number(-bogus.error)), "EINVAL");
  assert.equal(bogus.failedCall, "UFFDIO_API");
});

Deno.test("probe: memfd_create and pidfd_open give working fds", () => {
  const memfd = memfdCreate("cryo-test");
  assert.ok(memfd >= 0n, `memfd_create: ${memfd}`);
  assert.match(Deno.readLinkSync(`/proc/self/fd/${memfd}`), /^\/memfd:cryo-test/);
  closeFd(memfd);
  const pidfd = pidfdOpen(Deno.pid);
  assert.ok(pidfd >= 0n, `pidfd_open: ${pidfd}`);
  assert.match(
    Deno.readTextFileSync(`/proc/self/fdinfo/${pidfd}`),
    new RegExp(`Pid:\\s+${Deno.pid}`),
  );
  closeFd(pidfd);
  assert.equal(errnoName(Number(-pidfdOpen(0x3fffffff))), "ESRCH");
});

Deno.test("a `cryo check` killed while it holds its test process takes that process along", async () => {
  const paused = await startPaused(["check"], "check-inject");
  const cryo = paused.child.pid;
  const kids = Deno.readDirSync(`/proc/${cryo}/task`).toArray().flatMap((t) =>
    Deno.readTextFileSync(`/proc/${cryo}/task/${t.name}/children`).trim().split(/\s+/)
      .filter(Boolean).map(Number)
  );
  assert.ok(kids.length >= 1, "the test process was found");
  for (const k of kids) assert.equal(procState(k), "t", `pid ${k} is held by cryo`);
  paused.child.kill("SIGKILL");
  await paused.output;
  const deadline = deadlineIn(10_000);
  const left = () => kids.filter((k) => !["", "Z", "X"].includes(procState(k)));
  while (left().length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(left(), [], "the test process is gone with cryo");
});

/** State letter of `pid` from /proc (empty once it is gone). */
function procState(pid: number): string {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/stat`).replace(/^.*\) /s, "")[0];
  } catch {
    return "";
  }
}
