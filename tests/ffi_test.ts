/**
 * Tests of ffi/ against real processes: libc syscalls and errors, posix_spawn
 * and wait decoding, ptrace on a C target (tests/targets/ffi_target.c),
 * syscall injection against the target's own state, restart of a syscall
 * interrupted by the freeze, and the byte layout of every struct codec.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  addressOf,
  cstr,
  CStringArray,
  rawSyscall,
  selfPid,
  syscall,
  SyscallError,
  syscallNum,
} from "../ffi/libc.ts";
import { Errno, errnoName } from "../ffi/errno.ts";
import { SYS, syscallName } from "../ffi/sysno.ts";
import { posixSpawn } from "../ffi/spawn.ts";
import {
  __WALL,
  decodeWaitStatus,
  parkStatus,
  PTRACE_EVENT,
  waitPid,
  WCONTINUED,
  WNOHANG,
  WUNTRACED,
} from "../ffi/wait.ts";
import {
  cont,
  detach,
  getEventMsg,
  getRegs,
  getRseqConfig,
  getSiginfo,
  getSigmask,
  getXstate,
  interrupt,
  listen,
  peekData,
  peekSiginfo,
  pokeData,
  PTRACE_O,
  seize,
  setOptions,
  setRegs,
  SIGINFO_SIZE,
  singleStep,
  TraceeGoneError,
  waitStop,
  xsaveSize,
} from "../ffi/ptrace.ts";
import { findSyscallInstruction, InjectionError, injectSyscall } from "../ffi/inject.ts";
import {
  processVmRead,
  processVmReadFully,
  processVmWrite,
  processVmWriteFully,
} from "../ffi/process_vm.ts";
import {
  decodeUserRegs,
  encodeUserRegs,
  regsFromHex,
  regsToHex,
  signed,
  USER_REGS_FIELDS,
  USER_REGS_SIZE,
  type UserRegs,
} from "../ffi/regs.ts";
import {
  cloneArgs,
  decodeSiginfo,
  decodeXsaveHeader,
  encodeSiginfo,
  itimerval,
  kernelSigaction,
  prctlMmMap,
  RLIM_INFINITY,
  rlimit,
  rseqConfiguration,
  SIGINFO_BYTES,
  stackT,
  type Struct,
  xsaveXcr0,
} from "../ffi/structs.ts";
import { factBigInt, targetFacts } from "./helpers/checks.ts";
import { tempDir } from "./helpers/fs.ts";
import { freePid, statusField } from "./helpers/proc.ts";
import {
  SIGCONT,
  SIGKILL,
  SIGQUIT,
  SIGSTOP,
  SIGTERM,
  SIGTRAP,
  SIGUSR1,
  SIGUSR2,
} from "./helpers/signals.ts";
import { buildTarget, startTarget, type Target, withTargets } from "./helpers/targets.ts";
import { sleep } from "./helpers/wait.ts";

const SA_SIGINFO = 0x4n;
const SA_ONSTACK = 0x08000000n;
const SA_RESTART = 0x10000000n;
const SA_RESTORER = 0x04000000n;
const SI_USER = 0;
const SI_TKILL = -6;
const ERESTART_RESTARTBLOCK = 516n;
const RSEQ_SIG = 0x53053053;
const PAGE = 4096;

/** Value the state target expects to find in `poke_target` (high bit set on purpose). */
const POKE_VALUE = 0xfeedfacecafebeefn;
const XMM15_MAGIC = 0x1122334455667788n;
const FPU_CONTROL_WORD = 0x027f;

const sigBit = (sig: number) => 1n << BigInt(sig - 1);

/** Facts of the state target (`key=value` lines). */
type Facts = Record<string, string>;

/**
 * Starts ffi_target in state mode (expecting `poke` in poke_target after
 * the test), waits until it is ready and returns it with its facts.
 */
async function startStateTarget(poke: bigint): Promise<{ t: Target; r: Facts; pid: number }> {
  const t = await startTarget("ffi_target", ["state", poke.toString(16)]);
  await t.waitFor(/^ready$/m);
  const r = targetFacts(t);
  assert.equal(Number(factBigInt(r, "pid")), t.pid);
  return { t, r, pid: t.pid };
}

/** Seizes `pid` (killed should this process die), interrupts it and waits for the stop. */
function freeze(pid: number): ReturnType<typeof waitStop> {
  seize(pid, PTRACE_O.EXITKILL);
  interrupt(pid);
  return waitStop(pid);
}

/** Decodes a `codec` struct read from `pid`'s memory at `addr`. */
function readStruct<T>(pid: number, codec: Struct<T>, addr: bigint): T {
  const bytes = new Uint8Array(codec.size);
  processVmReadFully(pid, addr, bytes);
  return codec.decode(bytes);
}

/** Maps a read-write anonymous scratch page in `pid` by injection (through `sc`). */
function mapScratchPage(pid: number, sc: bigint): bigint {
  return injectSyscall(pid, sc, SYS.mmap, 0, PAGE, 3, 0x22, -1, 0);
}

/** Mappings of a process as address ranges. */
function mappings(pid: number): { start: bigint; end: bigint; line: string }[] {
  return Deno.readTextFileSync(`/proc/${pid}/maps`).split("\n").filter(Boolean).map((line) => {
    const [s, e] = line.split(/\s+/)[0].split("-");
    return { start: BigInt(`0x${s}`), end: BigInt(`0x${e}`), line };
  });
}

function isMapped(pid: number, addr: bigint): boolean {
  return mappings(pid).some((m) => addr >= m.start && addr < m.end);
}

/**
 * Waits for the state target's verdict and returns the names of its failed
 * self-checks, leaving out `tolerated` ones.
 */
async function selfCheckFailures(t: Target, tolerated: string[] = []): Promise<string[]> {
  await t.waitFor(/^(PASS|FAIL)$/m);
  return [...t.output().matchAll(/^check (\w+) FAIL$/gm)].map((m) => m[1])
    .filter((c) => !tolerated.includes(c));
}

/** Detaches from the state target, ends its spin (SIGUSR2) and returns its failed self-checks. */
function releaseStateTarget(t: Target): Promise<string[]> {
  detach(t.pid);
  syscall(SYS.kill, t.pid, SIGUSR2);
  return selfCheckFailures(t);
}

/** The self-check that an injection must not break: the target's SIGTRAP handler. */
const TRAP_CHECK = "trap_action";

// ---------------------------------------------------------------------------
// libc

Deno.test("libc: kill of pid 0 or -1 (cryo's own group, everyone) is refused without being made", () => {
  // Signal 0 only checks: the kernel would answer 0 for both.
  for (const pid of [0, -1, 0n, -1n]) assert.equal(rawSyscall(SYS.kill, pid, 0), -22n);
  assert.equal(rawSyscall(SYS.kill, Deno.pid, 0), 0n);
});

Deno.test("libc: syscall returns results, failures throw SyscallError naming call, args, errno", () => {
  assert.equal(syscall(SYS.getpid), BigInt(Deno.pid));
  assert.equal(syscallNum(SYS.getpid), Deno.pid);
  assert.equal(selfPid(), Deno.pid);
  // Under `deno test` the JS thread is not the process's main thread (tid != pid);
  // ptrace only needs every call to come from this same thread.
  assert.equal(syscallNum(SYS.gettid), syscallNum(SYS.gettid));

  const pid = freePid();
  let err: unknown;
  try {
    syscall(SYS.kill, pid, 0);
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof SyscallError, `expected SyscallError, got ${err}`);
  assert.equal(err.name, "SyscallError");
  assert.equal(err.message, `kill(${pid}, 0) failed: ESRCH`);
  assert.equal(err.call, "kill");
  assert.deepEqual(err.args, [pid, 0]);
  assert.equal(err.errno, Errno.ESRCH);
  assert.equal(err.code, "ESRCH");

  // Buffers are shown by size, bigints in hex.
  assert.throws(
    () => syscall(SYS.read, -1, new Uint8Array(16), 16),
    (e) => e instanceof SyscallError && e.message === "read(-1, <buf 16>, 16) failed: EBADF",
  );
  assert.throws(
    () => syscall(SYS.close, 0x7fffffffn),
    (e) => e instanceof SyscallError && e.message === "close(0x7fffffff) failed: EBADF",
  );

  // rawSyscall never throws: -errno.
  assert.equal(rawSyscall(SYS.kill, pid, 0), -BigInt(Errno.ESRCH));
  assert.equal(rawSyscall(SYS.close, -1), -BigInt(Errno.EBADF));
  assert.equal(rawSyscall(SYS.kill, Deno.pid, 0), 0n);

  assert.equal(errnoName(3), "ESRCH");
  assert.equal(errnoName(516), "ERESTART_RESTARTBLOCK");
  assert.equal(errnoName(9999), "errno 9999");
  assert.equal(syscallName(SYS.process_vm_readv), "process_vm_readv");
  assert.equal(syscallName(9999), "syscall_9999");
});

Deno.test("libc: cstr, addressOf and CStringArray build C strings the kernel can read", () => {
  const s = cstr("héllo");
  assert.deepEqual([...s], [...new TextEncoder().encode("héllo"), 0]);
  const arr = new CStringArray(["a", "bc", ""]);
  assert.equal(arr.pointers.length, 4);
  assert.equal(arr.pointers[3], 0n);
  const texts = [0, 1, 2].map((i) =>
    Deno.UnsafePointerView.getCString(Deno.UnsafePointer.create(arr.pointers[i])!)
  );
  assert.deepEqual(texts, ["a", "bc", ""]);
  // addressOf of a view is the address of its first byte, so the kernel writes there.
  const buf = new Uint8Array(32);
  const view = buf.subarray(8);
  assert.equal(addressOf(view) - addressOf(buf), 8n);
  const ts = new BigInt64Array(2);
  syscall(SYS.clock_gettime, 1, ts.subarray(0));
  assert.ok(ts[0] > 0n || ts[1] > 0n);
});

// ---------------------------------------------------------------------------
// struct codecs

function roundTrip<T>(codec: Struct<T>, value: T, size: number): Uint8Array {
  assert.equal(codec.size, size);
  const bytes = codec.encode(value);
  assert.equal(bytes.length, size);
  assert.deepEqual(codec.decode(bytes), value);
  // decode honours the view's offset
  const shifted = new Uint8Array(size + 8);
  shifted.set(bytes, 8);
  assert.deepEqual(codec.decode(shifted.subarray(8)), value);
  return bytes;
}

Deno.test("codecs: every struct round-trips with the kernel's size and field offsets", () => {
  const le = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);

  let b = roundTrip(kernelSigaction, {
    handler: 0x401000n,
    flags: SA_SIGINFO | SA_RESTART | SA_RESTORER,
    restorer: 0x7f0000001234n,
    mask: 0x8000000000000001n,
  }, 32);
  assert.equal(le(b).getBigUint64(24, true), 0x8000000000000001n);

  b = roundTrip(stackT, { sp: 0x7ffd00000000n, flags: 2, size: 65536n }, 24);
  assert.equal(le(b).getInt32(8, true), 2);
  assert.equal(le(b).getBigUint64(16, true), 65536n);

  b = roundTrip(
    itimerval,
    { intervalSec: 7n, intervalUsec: 250000n, valueSec: -1n, valueUsec: 3n },
    32,
  );
  assert.equal(le(b).getBigInt64(16, true), -1n);

  b = roundTrip(rlimit, { cur: 321n, max: RLIM_INFINITY }, 16);
  assert.equal(le(b).getBigUint64(8, true), 0xffffffffffffffffn);

  b = roundTrip(prctlMmMap, {
    startCode: 1n,
    endCode: 2n,
    startData: 3n,
    endData: 4n,
    startBrk: 5n,
    brk: 6n,
    startStack: 7n,
    argStart: 8n,
    argEnd: 9n,
    envStart: 10n,
    envEnd: 11n,
    auxv: 12n,
    auxvSize: 13,
    exeFd: 14,
  }, 104);
  assert.equal(le(b).getBigUint64(88, true), 12n);
  assert.equal(le(b).getUint32(96, true), 13);
  assert.equal(le(b).getUint32(100, true), 14);

  b = roundTrip(cloneArgs, {
    flags: 0x10000n,
    pidfd: 1n,
    childTid: 2n,
    parentTid: 3n,
    exitSignal: 17n,
    stack: 5n,
    stackSize: 6n,
    tls: 7n,
    setTid: 8n,
    setTidSize: 1n,
    cgroup: 10n,
  }, 88);
  assert.equal(le(b).getBigUint64(32, true), 17n);
  assert.equal(le(b).getBigUint64(80, true), 10n);

  b = roundTrip(rseqConfiguration, { addr: 0x7f0000000020n, len: 32, sig: RSEQ_SIG, flags: 0 }, 24);
  assert.equal(le(b).getUint32(12, true), RSEQ_SIG);

  // user_regs_struct
  assert.equal(USER_REGS_SIZE, 216);
  assert.equal(USER_REGS_FIELDS.length, 27);
  const regs = {} as UserRegs;
  USER_REGS_FIELDS.forEach((f, i) => regs[f] = (BigInt(i + 1) << 56n) | BigInt(i * 3));
  regs.rax = 0xffffffffffffffe0n;
  const rb = encodeUserRegs(regs);
  assert.equal(rb.length, 216);
  assert.deepEqual(decodeUserRegs(rb), regs);
  assert.equal(le(rb).getBigUint64(16 * 8, true), regs.rip, "rip is register 16");
  assert.equal(le(rb).getBigUint64(15 * 8, true), regs.orig_rax, "orig_rax is register 15");
  assert.equal(le(rb).getBigUint64(21 * 8, true), regs.fs_base, "fs_base is register 21");
  assert.deepEqual(regsFromHex(regsToHex(regs)), regs);
  // Every register, in the struct's order (the note's JSON keys), each its own value.
  const distinct = decodeUserRegs(
    new Uint8Array(new BigUint64Array(USER_REGS_FIELDS.map((_, i) => BigInt(i + 1) << 40n)).buffer),
  );
  assert.deepEqual(Object.keys(regsToHex(distinct)), [...USER_REGS_FIELDS]);
  assert.deepEqual(
    Object.values(regsToHex(distinct)),
    USER_REGS_FIELDS.map((_, i) => `0x${(BigInt(i + 1) << 40n).toString(16)}`),
  );
  assert.equal(regsToHex(regs).rax, "0xffffffffffffffe0");
  assert.throws(() => regsFromHex({ ...regsToHex(regs), rip: undefined as unknown as string }));
  assert.equal(signed(regs.rax), -32n);
  assert.equal(signed(5n), 5n);

  // siginfo
  assert.equal(SIGINFO_BYTES, 128);
  assert.equal(SIGINFO_SIZE, 128);
  const head = { signo: 10, errno: 0, code: SI_TKILL, pid: 1234, uid: 0xfffffffe };
  const sb = encodeSiginfo(head);
  assert.equal(sb.length, 128);
  assert.deepEqual(decodeSiginfo(sb), head);
  assert.equal(le(sb).getInt32(16, true), 1234);

  // XSAVE header
  const area = new Uint8Array(1024);
  le(area).setBigUint64(512, 0x2e7n, true);
  le(area).setBigUint64(520, 0x8000000000000003n, true);
  assert.deepEqual(decodeXsaveHeader(area), { xstateBv: 0x2e7n, xcompBv: 0x8000000000000003n });
  // ptrace and core dumps keep XCR0 in the first software-reserved word (byte 464).
  le(area).setBigUint64(464, 0xe7n, true);
  assert.equal(xsaveXcr0(area), 0xe7n);
});

Deno.test("wait: raw status words decode like the W* macros", () => {
  assert.deepEqual(decodeWaitStatus(7, 42 << 8), { kind: "exited", pid: 7, code: 42 });
  assert.deepEqual(decodeWaitStatus(7, SIGTERM), {
    kind: "signaled",
    pid: 7,
    signal: SIGTERM,
    core: false,
  });
  assert.deepEqual(decodeWaitStatus(7, 0x80 | 6), {
    kind: "signaled",
    pid: 7,
    signal: 6,
    core: true,
  });
  assert.deepEqual(decodeWaitStatus(7, (SIGSTOP << 8) | 0x7f), {
    kind: "stopped",
    pid: 7,
    signal: SIGSTOP,
    event: 0,
    groupStop: false,
  });
  assert.deepEqual(decodeWaitStatus(7, 0xffff), { kind: "continued", pid: 7 });
  const eventStop = (PTRACE_EVENT.STOP << 16) | (SIGTRAP << 8) | 0x7f;
  assert.deepEqual(decodeWaitStatus(7, eventStop), {
    kind: "stopped",
    pid: 7,
    signal: SIGTRAP,
    event: 128,
    groupStop: false,
  });
  const groupStop = (PTRACE_EVENT.STOP << 16) | (SIGSTOP << 8) | 0x7f;
  assert.equal((decodeWaitStatus(7, groupStop) as { groupStop: boolean }).groupStop, true);
});

// ---------------------------------------------------------------------------
// posix_spawn and wait on real processes

Deno.test(
  "posixSpawn: open, dup2 and close file actions are applied in order",
  withTargets(async () => {
    const bin = await buildTarget("ffi_target");
    const dir = await tempDir("cryo-ffi-");
    await Deno.writeTextFile(`${dir}/in`, "from stdin\n");
    const t = await startTarget(bin, ["fds"], { stdin: `${dir}/in` });
    assert.deepEqual(await t.wait(), { kind: "exited", pid: t.pid, code: 0 });
    assert.equal(t.output(), "from stdin\nfd5=closed fd6=closed\n");

    // Direct use: fd 5 opened, duplicated to 6, then closed; stdout to a new file.
    const pid = posixSpawn(bin, ["ffi_target", "fds"], {
      fileActions: [
        { kind: "open", fd: 0, path: `${dir}/in`, flags: 0 },
        { kind: "open", fd: 1, path: `${dir}/out`, flags: 0o1 | 0o100 | 0o1000, mode: 0o600 },
        { kind: "dup2", fd: 1, newFd: 2 },
        { kind: "open", fd: 5, path: "/dev/null", flags: 0 },
        { kind: "dup2", fd: 5, newFd: 6 },
        { kind: "close", fd: 5 },
      ],
    });
    assert.deepEqual(waitPid(pid, 0), { kind: "exited", pid, code: 0 });
    assert.equal(await Deno.readTextFile(`${dir}/out`), "from stdin\nfd5=closed fd6=open\n");
    assert.equal((await Deno.stat(`${dir}/out`)).mode! & 0o777, 0o600);

    assert.throws(
      () => posixSpawn(`${dir}/missing`, ["missing"]),
      (e) => e instanceof SyscallError && e.code === "ENOENT" && e.call === "posix_spawn",
    );
  }),
);

Deno.test(
  "waitPid: exited with code, killed by signal, stopped and continued",
  withTargets(async () => {
    const exiter = await startTarget("ffi_target", ["exit", "42"]);
    assert.deepEqual(await exiter.wait(), { kind: "exited", pid: exiter.pid, code: 42 });

    const idle = await startTarget("ffi_target", ["idle"]);
    assert.deepEqual(waitPid(idle.pid, WNOHANG), { kind: "none" });
    syscall(SYS.kill, idle.pid, SIGSTOP);
    assert.deepEqual(waitPid(idle.pid, WUNTRACED), {
      kind: "stopped",
      pid: idle.pid,
      signal: SIGSTOP,
      event: 0,
      groupStop: false,
    });
    syscall(SYS.kill, idle.pid, SIGCONT);
    assert.deepEqual(waitPid(idle.pid, WCONTINUED), { kind: "continued", pid: idle.pid });
    syscall(SYS.kill, idle.pid, SIGTERM);
    assert.deepEqual(await idle.wait(), {
      kind: "signaled",
      pid: idle.pid,
      signal: SIGTERM,
      core: false,
    });

    const stranger = freePid();
    assert.throws(
      () => waitPid(stranger, WNOHANG),
      (e) => e instanceof SyscallError && e.code === "ECHILD" && e.call === "wait4",
    );
    // A status parked by a wait(-1) loop is handed out once, to the first waitPid(pid).
    parkStatus({ kind: "exited", pid: stranger, code: 3 });
    assert.deepEqual(waitPid(stranger, WNOHANG), { kind: "exited", pid: stranger, code: 3 });
    assert.throws(() => waitPid(stranger, WNOHANG), SyscallError);
  }),
);

Deno.test(
  "ptrace: group-stop under SEIZE, PTRACE_LISTEN, and the exit event with its message",
  withTargets(async () => {
    const t = await startTarget("ffi_target", ["idle"]);
    const pid = t.pid;
    seize(pid, PTRACE_O.EXITKILL);
    syscall(SYS.kill, pid, SIGSTOP);
    // First the SIGSTOP signal-delivery stop; passing it on starts the group-stop.
    let st = waitStop(pid);
    assert.deepEqual([st.signal, st.event, st.groupStop], [SIGSTOP, 0, false]);
    assert.equal(decodeSiginfo(getSiginfo(pid)).pid, Deno.pid);
    cont(pid, SIGSTOP);
    st = waitStop(pid);
    assert.deepEqual([st.signal, st.event, st.groupStop], [SIGSTOP, PTRACE_EVENT.STOP, true]);
    assert.equal(
      statusField(pid, "State")[0],
      "t",
      "traced stop",
    );
    // LISTEN: stays stopped until SIGCONT, which ends the group-stop with another event stop.
    listen(pid);
    syscall(SYS.kill, pid, SIGCONT);
    st = waitStop(pid);
    assert.equal(st.event, PTRACE_EVENT.STOP);
    assert.equal(st.groupStop, false);

    // PTRACE_O_TRACEEXIT: SIGTERM stops the dying task, the event message is its wait status.
    setOptions(pid, PTRACE_O.EXITKILL | PTRACE_O.TRACEEXIT);
    cont(pid);
    syscall(SYS.kill, pid, SIGTERM);
    for (;;) {
      st = waitStop(pid);
      if (st.event === PTRACE_EVENT.EXIT) break;
      cont(pid, st.event === 0 ? st.signal : 0); // SIGCONT/SIGTERM delivery stops
    }
    assert.equal(Number(getEventMsg(pid)), SIGTERM);
    cont(pid);
    assert.deepEqual(await t.wait(), { kind: "signaled", pid, signal: SIGTERM, core: false });
  }),
);

// ---------------------------------------------------------------------------
// ptrace on a real target

Deno.test(
  "ptrace: freeze, inspect, inject, modify and detach a live target that then checks itself",
  withTargets(async () => {
    const { t, r, pid } = await startStateTarget(POKE_VALUE);
    const spinStart = factBigInt(r, "spin_start");
    const spinEnd = factBigInt(r, "spin_end");
    assert.ok(spinEnd > spinStart);

    // Pending blocked SIGUSR1: one in the process-wide queue, one for the thread.
    syscall(SYS.kill, pid, SIGUSR1);
    syscall(SYS.tgkill, pid, pid, SIGUSR1);

    const st = freeze(pid);
    assert.equal(st.pid, pid);
    assert.equal(st.signal, SIGTRAP);
    assert.equal(st.event, PTRACE_EVENT.STOP);
    assert.equal(st.groupStop, false);
    const si = decodeSiginfo(getSiginfo(pid));
    assert.equal(si.signo, SIGTRAP);
    assert.equal(si.code, (PTRACE_EVENT.STOP << 8) | SIGTRAP);

    // General registers: stopped in user space inside spin_here.
    const regs = getRegs(pid);
    assert.ok(
      regs.rip >= spinStart && regs.rip < spinEnd,
      `rip 0x${regs.rip.toString(16)} outside spin_here [0x${spinStart.toString(16)}, 0x${
        spinEnd.toString(16)
      })`,
    );
    assert.equal(regs.cs, 0x33n);
    assert.equal(regs.ss, 0x2bn);
    assert.equal(regs.orig_rax, 0xffffffffffffffffn, "not in a syscall");
    assert.ok(isMapped(pid, regs.rsp), "rsp points into the target's memory");
    assert.ok(isMapped(pid, regs.fs_base), "fs_base points at the target's TLS");

    // setRegs round trip: change r12 and r13, read back, put the originals back.
    const changed = { ...regs, r12: 0xdeadbeefn, r13: 0xffffffff00000001n };
    setRegs(pid, changed);
    assert.deepEqual(getRegs(pid), changed);
    setRegs(pid, regs);
    assert.deepEqual(getRegs(pid), regs);

    // XSAVE area: size, header and the FPU state the target set.
    const size = xsaveSize(pid);
    const xstate = getXstate(pid);
    assert.equal(xstate.length, size);
    assert.ok(size >= 576, `XSAVE area of ${size} bytes`);
    const header = decodeXsaveHeader(xstate);
    assert.equal(header.xstateBv & 3n, 3n, `xstate_bv 0x${header.xstateBv.toString(16)}`);
    assert.equal(header.xcompBv, 0n, "standard (non-compacted) format");
    const xcr0 = xsaveXcr0(xstate);
    assert.equal(xcr0 & 3n, 3n, `XCR0 0x${xcr0.toString(16)} lacks x87|SSE`);
    assert.equal(header.xstateBv & ~xcr0, 0n, "xstate_bv only has features enabled in XCR0");
    const xdv = new DataView(xstate.buffer, xstate.byteOffset, xstate.length);
    assert.equal(xdv.getUint16(0, true), FPU_CONTROL_WORD, "x87 control word");
    assert.equal(xdv.getBigUint64(160 + 15 * 16, true), XMM15_MAGIC, "xmm15");

    // Signal mask and pending signals.
    assert.equal(getSigmask(pid), sigBit(SIGUSR1));
    assert.equal(getSigmask(pid), factBigInt(r, "sigmask"));
    const shared = peekSiginfo(pid, true).map(decodeSiginfo);
    const priv = peekSiginfo(pid, false).map(decodeSiginfo);
    assert.deepEqual(shared, [{ signo: SIGUSR1, errno: 0, code: SI_USER, pid: Deno.pid, uid: 0 }]);
    assert.deepEqual(priv, [{ signo: SIGUSR1, errno: 0, code: SI_TKILL, pid: Deno.pid, uid: 0 }]);

    // rseq: glibc registered the area in the thread's TCB.
    const rseq = getRseqConfig(pid);
    assert.equal(rseq.addr, factBigInt(r, "rseq_addr"));
    assert.ok(rseq.len >= 32, `rseq len ${rseq.len}`);
    assert.equal(rseq.sig, RSEQ_SIG);
    assert.equal(rseq.flags, 0);
    assert.ok(isMapped(pid, rseq.addr));

    // peek/poke one word; the target checks the value after detach.
    const pokeAddr = factBigInt(r, "poke_addr");
    assert.equal(peekData(pid, pokeAddr), 0xa5a5a5a5a5a5a5a5n);
    pokeData(pid, pokeAddr, POKE_VALUE);
    assert.equal(peekData(pid, pokeAddr), POKE_VALUE);
    const word = new Uint8Array(8);
    processVmReadFully(pid, pokeAddr, word);
    assert.equal(new DataView(word.buffer).getBigUint64(0, true), POKE_VALUE);
    assert.throws(
      () => peekData(pid, 8n),
      (e) => e instanceof SyscallError && e.call === "ptrace(PTRACE_PEEKDATA)" && e.code === "EIO",
    );

    // process_vm_readv/writev on the target's buffer (crossing a page boundary).
    const bufAddr = factBigInt(r, "buf_addr");
    const bufSize = Number(factBigInt(r, "buf_size"));
    const all = new Uint8Array(bufSize);
    assert.equal(processVmRead(pid, bufAddr, all), bufSize);
    all.forEach((v, i) => {
      if (v !== ((i * 7 + 3) & 0xff)) throw new Error(`buf[${i}] = ${v}`);
    });
    const patch = new Uint8Array(300).map((_, j) => ((4000 + j) * 13 + 1) & 0xff);
    assert.equal(processVmWrite(pid, bufAddr + 4000n, patch), 300);
    const back = new Uint8Array(400);
    processVmReadFully(pid, bufAddr + 3950n, back.subarray(50));
    assert.deepEqual(back.subarray(100, 400), patch);
    assert.deepEqual([...back.subarray(50, 100)], [...all.subarray(3950, 4000)]);
    processVmWriteFully(pid, bufAddr + 4000n, patch);
    assert.throws(
      () => processVmRead(pid, 16n, new Uint8Array(8)),
      (e) => e instanceof SyscallError && e.call === "process_vm_readv" && e.code === "EFAULT",
    );

    // One instruction further, still in spin_here (a SIGTRAP signal-delivery stop).
    singleStep(pid);
    const stepped = waitStop(pid);
    assert.deepEqual([stepped.signal, stepped.event], [SIGTRAP, 0]);
    const stepRegs = getRegs(pid);
    assert.notEqual(stepRegs.rip, regs.rip);
    assert.ok(stepRegs.rip >= spinStart && stepRegs.rip < spinEnd);

    // A cont/interrupt cycle (dropping the step's SIGTRAP) still stops in spin_here.
    cont(pid);
    await sleep(20);
    interrupt(pid);
    assert.equal(waitStop(pid).event, PTRACE_EVENT.STOP);
    const regs2 = getRegs(pid);
    assert.ok(regs2.rip >= spinStart && regs2.rip < spinEnd);

    // Injection: the target's own getpid/gettid; everything restored exactly.
    const sc = findSyscallInstruction(pid);
    const insn = new Uint8Array(2);
    processVmReadFully(pid, sc, insn);
    assert.deepEqual([...insn], [0x0f, 0x05]);
    const maskBefore = getSigmask(pid);
    const xBefore = getXstate(pid);
    assert.equal(injectSyscall(pid, sc, SYS.getpid), BigInt(pid));
    assert.equal(injectSyscall(pid, sc, SYS.gettid), BigInt(pid));
    assert.equal(injectSyscall(pid, sc, SYS.getppid), BigInt(Deno.pid));
    assert.equal(injectSyscall(pid, sc, SYS.close, -1), -BigInt(Errno.EBADF));
    const regsAfter = getRegs(pid);
    for (const f of USER_REGS_FIELDS) {
      assert.equal(regsAfter[f], regs2[f], `register ${f} changed by injection`);
    }
    assert.equal(getSigmask(pid), maskBefore);
    assert.deepEqual(getXstate(pid), xBefore, "XSAVE area changed by injection");
    assert.equal(peekSiginfo(pid, true).length, 1, "shared pending signal kept");
    assert.equal(peekSiginfo(pid, false).length, 1, "private pending signal kept");

    assert.throws(
      () => findSyscallInstruction(pid, { start: 0n, end: 0xffffffffffffffffn }),
      (e) => e instanceof InjectionError,
    );

    assert.deepEqual(await releaseStateTarget(t), [], t.output());
    assert.deepEqual(await t.wait(), { kind: "exited", pid, code: 0 });
  }),
);

Deno.test(
  "inject: read the target's sigaction, altstack, itimer and rlimit into an injected scratch page",
  withTargets(async () => {
    const { t, r, pid } = await startStateTarget(POKE_VALUE);
    freeze(pid);
    const regsBefore = getRegs(pid);
    const sc = findSyscallInstruction(pid);

    const page = mapScratchPage(pid, sc);
    assert.ok(page > 0n && page % BigInt(PAGE) === 0n, `mmap returned ${page}`);
    assert.ok(mappings(pid).some((m) => m.start === page), "scratch page is mapped");

    const read = <T>(codec: Struct<T>, addr: bigint) => readStruct(pid, codec, addr);

    assert.equal(injectSyscall(pid, sc, SYS.rt_sigaction, SIGUSR2, 0, page, 8), 0n);
    const act = read(kernelSigaction, page);
    assert.equal(act.handler, factBigInt(r, "usr2_handler"));
    const want = SA_SIGINFO | SA_RESTART | SA_ONSTACK | SA_RESTORER;
    assert.equal(act.flags & want, want, `flags 0x${act.flags.toString(16)}`);
    assert.ok(isMapped(pid, act.restorer), "glibc's restorer is in the target");
    assert.equal(act.mask, sigBit(SIGQUIT));

    assert.equal(injectSyscall(pid, sc, SYS.sigaltstack, 0, page + 64n), 0n);
    assert.deepEqual(read(stackT, page + 64n), {
      sp: factBigInt(r, "altstack"),
      flags: 0,
      size: factBigInt(r, "altstack_size"),
    });

    assert.equal(injectSyscall(pid, sc, SYS.getitimer, 0, page + 128n), 0n);
    const itv = read(itimerval, page + 128n);
    assert.equal(itv.intervalSec, 7n);
    assert.equal(itv.intervalUsec, 250000n);
    assert.ok(itv.valueSec >= 40n && itv.valueSec < 50n, `itimer value ${itv.valueSec} s`);

    assert.equal(
      injectSyscall(pid, sc, SYS.prlimit64, 0, 7, /* RLIMIT_NOFILE */ 0, page + 192n),
      0n,
    );
    assert.deepEqual(read(rlimit, page + 192n), { cur: 321n, max: 654n });

    assert.equal(injectSyscall(pid, sc, SYS.munmap, page, PAGE), 0n);
    assert.ok(!mappings(pid).some((m) => m.start === page), "scratch page is gone");
    assert.throws(() => processVmRead(pid, page, new Uint8Array(8)), SyscallError);

    assert.deepEqual(getRegs(pid), regsBefore);
    // Nothing was poked, written or sent here; everything else must hold.
    assert.deepEqual(await releaseStateTarget(t), ["poke", "buffer", "usr1_pending"], t.output());
    assert.deepEqual(await t.wait(), { kind: "exited", pid, code: 0 });
  }),
);

// The single step over `syscall` ends with a forced SIGTRAP; were SIGTRAP blocked during the
// step, the kernel would reset the target's SIGTRAP handler to SIG_DFL (force_sig_info_to_task).
// injectSyscall therefore blocks every signal but SIGTRAP: this test keeps it that way.
Deno.test({
  name: "inject: injection leaves the target's SIGTRAP handler in place",
  fn: withTargets(async () => {
    const { t, r, pid } = await startStateTarget(0n);
    freeze(pid);
    const sc = findSyscallInstruction(pid);
    const page = mapScratchPage(pid, sc);
    assert.equal(injectSyscall(pid, sc, SYS.rt_sigaction, SIGTRAP, 0, page, 8), 0n);
    const handler = readStruct(pid, kernelSigaction, page).handler;
    assert.equal(handler, factBigInt(r, "trap_handler"));
    injectSyscall(pid, sc, SYS.munmap, page, PAGE);
    assert.ok(!(await releaseStateTarget(t)).includes(TRAP_CHECK), t.output());
  }),
});

Deno.test(
  "inject: a nanosleep interrupted by the freeze restarts and keeps its deadline",
  withTargets(async () => {
    const t = await startTarget("ffi_target", ["sleep", "3000"]);
    await t.waitFor(/^ready$/m);
    const pid = t.pid;
    await sleep(250);
    freeze(pid);
    const frozenAt = Date.now();
    const regs = getRegs(pid);
    assert.equal(regs.orig_rax, BigInt(SYS.clock_nanosleep), "stopped in clock_nanosleep");
    assert.equal(signed(regs.rax), -ERESTART_RESTARTBLOCK);
    const sc = findSyscallInstruction(pid);
    assert.equal(injectSyscall(pid, sc, SYS.getpid), BigInt(pid));
    assert.equal(injectSyscall(pid, sc, SYS.gettid), BigInt(pid));
    assert.equal(injectSyscall(pid, sc, SYS.getitimer, 0, 0), -BigInt(Errno.EFAULT));
    assert.deepEqual(getRegs(pid), regs);
    // Held long enough that a restart with the time left at the freeze (instead of the
    // original deadline) would overshoot by the time held (1.5 s or more); half of it is
    // left for waking up late on a loaded machine.
    await sleep(1500);
    const held = Date.now() - frozenAt;
    detach(pid);
    const m = await t.waitFor(/^slept rc=(-?\d+) elapsed_ms=(\d+)$/m, 10000);
    assert.equal(m[1], "0", "clock_nanosleep returned an error");
    const elapsed = Number(m[2]);
    assert.ok(
      elapsed >= 3000 && elapsed < 3000 + held / 2,
      `slept ${elapsed} ms instead of 3000 (held ${held} ms)`,
    );
    assert.deepEqual(await t.wait(), { kind: "exited", pid, code: 0 });
  }),
);

// ---------------------------------------------------------------------------
// tracee death

Deno.test("ptrace: SIGKILL while waiting for a stop raises TraceeGoneError", async () => {
  // Spawned directly: waitStop reaps the tracee, which the Target helper cannot be told.
  const bin = await buildTarget("ffi_target");
  const pid = posixSpawn(bin, ["ffi_target", "idle"], {
    fileActions: [{ kind: "open", fd: 0, path: "/dev/null", flags: 0 }],
  });
  let reaped = false;
  try {
    seize(pid, PTRACE_O.EXITKILL);
    syscall(SYS.kill, pid, SIGKILL);
    let err: unknown;
    try {
      waitStop(pid);
    } catch (e) {
      err = e;
    }
    reaped = err instanceof TraceeGoneError;
    assert.ok(err instanceof TraceeGoneError, `expected TraceeGoneError, got ${err}`);
    assert.equal(err.tid, pid);
    assert.deepEqual(err.status, { kind: "signaled", pid, signal: SIGKILL, core: false });
    assert.match(err.message, new RegExp(`process ${pid} was killed by signal 9`));
    assert.throws(
      () => seize(pid),
      (e) => e instanceof SyscallError && e.call === "ptrace(PTRACE_SEIZE)" && e.code === "ESRCH",
    );
  } finally {
    if (!reaped) {
      rawSyscall(SYS.kill, pid, SIGKILL);
      waitPid(pid, __WALL);
    }
  }
});
