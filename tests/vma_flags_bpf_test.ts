/**
 * VmFlags from a BPF task_vma iterator (engine/proc/vma_flags_bpf.ts,
 * engine/dump/vm_flags.ts): the iterator's areas and decoded flags equal
 * smaps' area by area on real targets (rt_memflags with its mlock and
 * madvise flags, rt_maps with many mappings of several kinds); the
 * freeze's reader gives exactly what smaps gives; a decoding smaps does not
 * confirm, or a bit it never confirmed, sends the dump to smaps; forcing
 * smaps (CRYO_VMFLAGS=smaps) works; a small process stays on smaps unless
 * CRYO_VMFLAGS=bpf; the program's bpf_attr offsets and
 * numbers are the running kernel's; and a dump taken on the BPF path
 * restores with the target's own checks passing.
 */

import assert from "node:assert/strict";
import { Btf, BTF_KIND } from "../ffi/btf.ts";
import {
  BPF_CMD,
  BPF_PROG_TYPE_TRACING,
  BPF_TRACE_ITER,
  ITER_LINK_INFO_SIZE,
  LINK_CREATE_ATTR,
  PROG_LOAD_ATTR,
} from "../ffi/bpf.ts";
import {
  bpfUnavailable,
  checkDecoding,
  decodeVmFlags,
  loadVmaIterator,
  readVmaRecords,
  taskVmaLayout,
} from "../engine/proc/vma_flags_bpf.ts";
import { PKEY_CODE, readSmapsFlags, type SmapsArea } from "../engine/proc/smaps_flags.ts";
import {
  recallConfirmed,
  recallLayout,
  rememberConfirmed,
  rememberLayout,
} from "../engine/proc/vm_flags_memo.ts";
import { frozenVmFlags, startVmFlagsCheck, vmFlagsPaths } from "../engine/dump/vm_flags.ts";
import { freezeTree, thawTree } from "../engine/dump/freeze.ts";
import { checkpoint } from "../engine/dump/mod.ts";
import { restore } from "../engine/restore/mod.ts";
import { readImageFile } from "../engine/image/reader.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { dumpKillRestore, startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";
import { startRtMaps, withVmFlagsMode } from "./helpers/vmflags_mode.ts";

/**
 * Whether this machine lets cryo load the iterator (root, BPF, BTF): where it
 * does not, the tests that need it are ignored (the dump reads smaps there).
 */
const BPF_HERE = loadVmaIterator();

/** A test that needs the iterator. */
function bpfTest(name: string, fn: () => void | Promise<void>): void {
  Deno.test({ name, ignore: !BPF_HERE, fn });
}

const MEMFLAGS_READY = /^ready pid=(\d+)$/m;

/** Areas of frozen `pid` from the iterator equal smaps' (but the gate area), flags decoded. */
function assertIteratorIsSmaps(pid: number, what: string): number {
  const smaps = readSmapsFlags(pid).filter((a) => a.path !== "[vsyscall]");
  const r = readVmaRecords(pid);
  assert.equal(r.count, smaps.length, `${what}: area count`);
  smaps.forEach((a, i) => {
    const at = `${what}: area ${a.start.toString(16)} ${a.path}`;
    assert.equal(r.start[i], a.start, at);
    assert.equal(r.end[i], a.end, at);
    assert.deepEqual(
      decodeVmFlags(r.flags[i]),
      a.vmFlags,
      `${at} flags 0x${r.flags[i].toString(16)}`,
    );
  });
  return smaps.length;
}

/** Runs `fn` on the frozen tree of `pid`, then thaws it. */
function frozen<T>(pid: number, fn: () => T): T {
  const tree = freezeTree(pid);
  try {
    return fn();
  } finally {
    thawTree(tree);
  }
}

bpfTest("vma flags bpf: the program's bpf_attr layout and numbers are the running kernel's", () => {
  const btf = Btf.vmlinux();
  const e = (en: string, n: string) => Number(btf.enumerator(en, n));
  assert.equal(e("bpf_cmd", "BPF_PROG_LOAD"), BPF_CMD.PROG_LOAD);
  assert.equal(e("bpf_cmd", "BPF_LINK_CREATE"), BPF_CMD.LINK_CREATE);
  assert.equal(e("bpf_cmd", "BPF_ITER_CREATE"), BPF_CMD.ITER_CREATE);
  assert.equal(e("bpf_prog_type", "BPF_PROG_TYPE_TRACING"), BPF_PROG_TYPE_TRACING);
  assert.equal(e("bpf_attach_type", "BPF_TRACE_ITER"), BPF_TRACE_ITER);
  const attr = btf.find(BTF_KIND.UNION, "bpf_attr")!;
  for (const [name, off] of Object.entries(PROG_LOAD_ATTR)) {
    assert.equal(btf.member(attr, name)?.offset, off, `bpf_attr.${name}`);
  }
  const link = btf.member(attr, "link_create")!;
  for (const [name, off] of Object.entries(LINK_CREATE_ATTR)) {
    assert.equal(btf.member(btf.resolve(link.type), name)?.offset, off, `link_create.${name}`);
  }
  assert.equal(
    btf.sizeOrType(btf.find(BTF_KIND.UNION, "bpf_iter_link_info")!),
    ITER_LINK_INFO_SIZE,
  );
});

bpfTest(
  "vma flags bpf: the iterator's areas and decoded flags are smaps' (rt_memflags, rt_maps)",
  withTargets(async () => {
    assert.ok(loadVmaIterator(), `the iterator loads here: ${bpfUnavailable()}`);
    for (const extra of [[], ["future-onfault"], ["future", "nothp", "ksm"]]) {
      const { t } = await startTriggered("rt_memflags", MEMFLAGS_READY, { extra });
      const what = `rt_memflags ${extra.join(" ")}`;
      const flags = frozen(t.pid, () => {
        assertIteratorIsSmaps(t.pid, what);
        return new Set(readSmapsFlags(t.pid).flatMap((a) => a.vmFlags));
      });
      // The target's own flags are among those compared.
      for (const code of ["lo", "lf", "dc", "wf", "dd", "hg", "nh", "gd", "rr", "sr"]) {
        assert.ok(flags.has(code), `${what}: some area has ${code}`);
      }
      await t.kill();
    }
    const { t } = await startRtMaps(3000);
    const n = frozen(t.pid, () => assertIteratorIsSmaps(t.pid, "rt_maps"));
    assert.ok(n > 3000, `${n} areas`);
    await t.kill();
  }),
);

bpfTest(
  "vma flags bpf: the freeze's reader gives smaps' areas and flags, after a check before the freeze",
  withTargets(async () => {
    const { t } = await startTriggered("rt_memflags", MEMFLAGS_READY);
    // By default a small process is not worth the iterator's check.
    assert.equal(await startVmFlagsCheck(t.pid), undefined);
    assert.equal(vmFlagsPaths.get(t.pid), "smaps: small");
    // A pre-copied one is (its load runs beside the copy, the freeze reads no smaps).
    const precopied = await startVmFlagsCheck(t.pid, [t.pid], false, true);
    assert.ok(precopied?.processes.has(t.pid), `pre-copied: ${vmFlagsPaths.get(t.pid)}`);
    frozen(t.pid, () => {
      assert.deepEqual(frozenVmFlags(t.pid, precopied), readSmapsFlags(t.pid));
      assert.equal(vmFlagsPaths.get(t.pid), "bpf");
    });
    const check = await withVmFlagsMode("bpf", () => startVmFlagsCheck(t.pid));
    assert.ok(check?.processes.has(t.pid), `checked: ${vmFlagsPaths.get(t.pid)}`);
    frozen(t.pid, () => {
      const areas = frozenVmFlags(t.pid, check);
      assert.equal(vmFlagsPaths.get(t.pid), "bpf");
      assert.deepEqual(areas, readSmapsFlags(t.pid));
      // A bit the check never confirmed sends the freeze to smaps.
      const lo = 1n << 13n;
      const without = {
        processes: new Map([[t.pid, {
          ...check!.processes.get(t.pid)!,
          bits: check!.processes.get(t.pid)!.bits & ~lo,
        }]]),
      };
      assert.equal(frozenVmFlags(t.pid, without), undefined);
      assert.match(vmFlagsPaths.get(t.pid)!, /^smaps: .*did not confirm/);
      // So does an unknown gate area.
      const noGate = {
        processes: new Map([[t.pid, { ...check!.processes.get(t.pid)!, gate: [] }]]),
      };
      assert.equal(frozenVmFlags(t.pid, noGate), undefined);
      assert.match(vmFlagsPaths.get(t.pid)!, /^smaps: area ffffffffff600000/);
    });
    await t.kill();
  }),
);

Deno.test("vma flags bpf: a decoding smaps does not show is a disagreement", () => {
  const area = (start: bigint, vmFlags: string[]): SmapsArea => ({
    start,
    end: start + 0x1000n,
    perms: "rw-p",
    offset: 0n,
    dev: "00:00",
    inode: 0,
    path: "",
    deleted: false,
    vmFlags,
  });
  const records = {
    count: 2,
    start: BigUint64Array.of(0x1000n, 0x3000n),
    end: BigUint64Array.of(0x2000n, 0x4000n),
    flags: BigUint64Array.of(0x100073n, 0x102073n),
  };
  const good = checkDecoding(records, [
    area(0x1000n, ["rd", "wr", "mr", "mw", "me", "ac"]),
    area(0x3000n, ["rd", "wr", "mr", "mw", "me", "lo", "ac"]),
  ]);
  assert.equal(good.disagreement, undefined);
  assert.equal(good.confirmedBits, 0x102073n);
  // An area smaps lists alone (the process ran between the reads) is not compared.
  const partial = checkDecoding(records, [area(0x1000n, ["rd", "wr", "mr", "mw", "me", "ac"])]);
  assert.equal(partial.compared, 1);
  assert.equal(partial.confirmedBits, 0x100073n);
  const bad = checkDecoding(records, [
    area(0x1000n, ["rd", "wr", "mr", "mw", "me", "ac"]),
    area(0x3000n, ["rd", "wr", "mr", "mw", "me", "ac", "lo"]),
  ]);
  assert.match(bad.disagreement!, /area 3000-4000/);
  // A bit without a code is never decoded.
  assert.equal(decodeVmFlags(1n << 63n), null);
  // A protection key (bits 32 to 35) is cryo's one pkey code, where smaps_flags.ts puts it.
  assert.deepEqual(decodeVmFlags(0x3n | (0x2n << 32n)), ["rd", "wr", PKEY_CODE]);
  assert.deepEqual(decodeVmFlags(0x3n | (0xfn << 32n) | (1n << 37n)), [
    "rd",
    "wr",
    PKEY_CODE,
    "ss",
  ]);
  assert.deepEqual(decodeVmFlags(0x3n | (1n << 37n)), ["rd", "wr", "ss"]);
});

bpfTest(
  "vma flags bpf: a dump on the BPF path restores rt_memflags with its checks passing; CRYO_VMFLAGS=smaps forces smaps",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_memflags", MEMFLAGS_READY);
    const pid = t.pid;
    // Forced smaps first (leave running), then the BPF path: the two images' mappings are the same.
    Deno.env.set("CRYO_VMFLAGS", "smaps");
    const forcedDir = await tempImageDir();
    try {
      await checkpoint(pid, { dir: forcedDir, leaveRunning: true, precopy: false });
    } finally {
      Deno.env.delete("CRYO_VMFLAGS");
    }
    assert.equal(vmFlagsPaths.get(pid), "smaps: not checked");
    const { dir } = await withVmFlagsMode("bpf", () => dumpKillRestore(t));
    assert.equal(vmFlagsPaths.get(pid), "bpf");
    const a = (await readImageFile(`${forcedDir}/${pid}.elf`)).process.mappings;
    const b = (await readImageFile(`${dir}/${pid}.elf`)).process.mappings;
    assert.deepEqual(
      b.map((m) => [m.start, m.end, m.vmFlags]),
      a.map((m) => [m.start, m.end, m.vmFlags]),
    );
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(
      t,
      ["maps-and-flags", "vmlck", "contents", "guard-pages", "growsdown-grows"],
      await t.wait(15000),
      { what: "rt_memflags on the BPF path" },
    );
  }),
);

bpfTest(
  "vma flags bpf: a pre-copied dump (the check in the pin barrier, tracked areas flagged uw) restores rt_memflags",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_memflags", MEMFLAGS_READY);
    const dir = await tempImageDir();
    const dump = await withVmFlagsMode(
      "bpf",
      () => checkpoint(t.pid, { dir, leaveRunning: true, precopy: true }),
    );
    assert.ok(dump.stats.precopy, "pre-copied");
    assert.equal(vmFlagsPaths.get(t.pid), "bpf");
    // The tracking's own "uw" is not in the image (as on the smaps path).
    const { process } = await readImageFile(`${dir}/${t.pid}.elf`);
    assert.ok(!process.mappings.some((m) => m.vmFlags.includes("uw")), "no uw recorded");
    await t.kill();
    const tree = await restore(dir);
    t.resetAfterRestore();
    assert.equal(tree.rootPid, t.pid);
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(
      t,
      ["maps-and-flags", "vmlck", "contents", "guard-pages", "growsdown-grows"],
      await t.wait(15000),
      { what: "rt_memflags pre-copied on the BPF path" },
    );
  }),
);

bpfTest(
  "vma flags bpf: bits confirmed on this boot spare the next check its smaps read; an untrusted or other boot's memo is not used",
  withTargets(async () => {
    const dir = Deno.makeTempDirSync({ prefix: "cryo-vmflags-memo-" });
    Deno.env.set("CRYO_CACHE_DIR", dir);
    const memoPath = `${dir}/vmflags/${
      Deno.readTextFileSync("/proc/sys/kernel/random/boot_id").trim()
    }.json`;
    const { t } = await startTriggered("rt_memflags", MEMFLAGS_READY);
    try {
      const first = await withVmFlagsMode("bpf", () => startVmFlagsCheck(t.pid));
      const bits = first!.processes.get(t.pid)!.bits;
      const memo = recallConfirmed();
      assert.equal(memo?.bits, bits, "the check's confirmed bits are remembered");
      assert.ok(memo!.gate.some((g) => g.path === "[vsyscall]"), "with the gate area");
      // A memo that holds one more bit shows whether the next check took it.
      const fake = 1n << 60n;
      rememberConfirmed({ bits: bits | fake, gate: memo!.gate });
      const second = await withVmFlagsMode("bpf", () => startVmFlagsCheck(t.pid));
      assert.equal(second!.processes.get(t.pid)!.bits, bits | fake, "the memo was used");
      frozen(t.pid, () => {
        assert.deepEqual(frozenVmFlags(t.pid, second), readSmapsFlags(t.pid));
        assert.equal(vmFlagsPaths.get(t.pid), "bpf");
      });
      // Writable by others: not trusted, so the check reads smaps again.
      Deno.chmodSync(memoPath, 0o666);
      assert.equal(recallConfirmed(), undefined);
      Deno.chmodSync(memoPath, 0o600);
      // Another boot's memo (a copy renamed onto this boot's name with its boot field kept).
      const text = Deno.readTextFileSync(memoPath);
      Deno.writeTextFileSync(memoPath, text.replace(/"boot":"[^"]*"/, '"boot":"another"'));
      assert.equal(recallConfirmed(), undefined);
      // A memo lacking a bit the process sets: that process's smaps is read.
      const lo = 1n << 13n;
      assert.ok((bits & lo) !== 0n, "rt_memflags has a locked area");
      rememberConfirmed({ bits: (bits & ~lo) | fake, gate: memo!.gate });
      const third = await withVmFlagsMode("bpf", () => startVmFlagsCheck(t.pid));
      assert.equal(third!.processes.get(t.pid)!.bits, bits, "checked against smaps");
      assert.equal(recallConfirmed()?.bits, bits | fake, "and the memo grew");
      // The iterator's kernel layout is remembered beside the bits, and a damaged one is not used.
      const layout = taskVmaLayout(Btf.vmlinux());
      rememberLayout(layout);
      assert.deepEqual(recallLayout(), layout);
      assert.equal(recallConfirmed()?.bits, bits | fake, "the bits are kept beside it");
      rememberLayout({ ...layout, vmFlags: -8 });
      assert.equal(recallLayout(), undefined);
    } finally {
      await t.kill();
      Deno.env.delete("CRYO_CACHE_DIR");
      Deno.removeSync(dir, { recursive: true });
    }
  }),
);

bpfTest(
  "vma flags bpf: a small process of 8 threads or more is checked for the iterator; the freeze's flags are smaps'",
  withTargets(async () => {
    // rt_precopy "threads": 4 MiB, 13 threads (each a stack and a guard area).
    const { t } = await startTriggered("rt_precopy", /^ready pid=(\d+) region=/m, {
      extra: ["4", "threads"],
    });
    const check = await startVmFlagsCheck(t.pid);
    assert.ok(check?.processes.has(t.pid), `checked: ${vmFlagsPaths.get(t.pid)}`);
    frozen(t.pid, () => {
      assert.deepEqual(frozenVmFlags(t.pid, check), readSmapsFlags(t.pid));
      assert.equal(vmFlagsPaths.get(t.pid), "bpf");
    });
    await t.kill();
  }),
);
