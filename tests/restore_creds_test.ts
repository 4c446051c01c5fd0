/**
 * Round trips of credentials (tests/targets/rt_creds.c): switched uids and
 * gids with kept capabilities, ambient capabilities with locked securebits
 * and no_new_privs, threads with credentials different from each other, fs
 * ids; the restore pre-flight refusing capabilities the restorer lacks;
 * a step the kernel refuses, and credentials that differ after the restore,
 * each failing the restore with one line and leaving no process behind;
 * and the order of the credentials sections in a compiled program.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { planRestore, restore } from "../engine/restore/mod.ts";
import { RestoreSession } from "../engine/restore/session.ts";
import { ProvidedFds } from "../engine/restore/provided.ts";
import { compileTree } from "../engine/restore/restorable.ts";
import { RestoreError, UnsupportedError } from "../engine/errors.ts";
import { readImageFile } from "../engine/image/reader.ts";
import type { ProcessImage, ThreadCredentials } from "../engine/model.ts";
import { credsDifferences, credsProblems } from "../engine/task/creds_check.ts";
import { emitCredsSections } from "../engine/task/creds.ts";
import { RUN_DONE_SLOT } from "../engine/task/sched_run.ts";
import { ProgramBuilder } from "../engine/program/builder.ts";
import { SYS, syscallName } from "../ffi/sysno.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { assertOneLineError, runCli } from "./helpers/commands.ts";
import { pathExists } from "./helpers/fs.ts";
import { dumpKillRestore, startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+) mode=(\w+) dumpable=(\d)$/m;

/** The per-thread checks rt_creds.c prints for thread `who`. */
function threadChecks(who: string): string[] {
  return [
    "Uid",
    "Gid",
    "Groups",
    "CapInh",
    "CapPrm",
    "CapEff",
    "CapBnd",
    "CapAmb",
    "NoNewPrivs",
    "ids",
    "getgroups",
    "capget",
    "securebits",
    "keepcaps",
  ].map((f) => `${who}-${f}`);
}

/**
 * Starts rt_creds in `mode`, dumps, kills and restores it (`rounds` times:
 * a restored process is dumped again), triggers it and asserts its report;
 * returns the (last) image of process `which` (default: the root).
 */
async function roundTrip(
  mode: string,
  who = ["main"],
  which: (root: ProcessImage) => number = (root) => root.pid,
  rounds = 1,
): Promise<ProcessImage> {
  const c = await startTriggered("rt_creds", READY, { extra: [mode] });
  let dir = "";
  for (let i = 0; i < rounds; i++) ({ dir } = await dumpKillRestore(c.t));
  await Deno.writeTextFile(c.trigger, "");
  const extra = who.includes("child")
    ? ["child-dumpable", "child-exit", "pipe-owner", "child-pipe-owner"]
    : mode === "switched"
    ? ["pipe-owner"]
    : [];
  assertChecksPassed(c.t, [...who.flatMap(threadChecks), "dumpable", ...extra], await c.t.wait(), {
    what: `rt_creds ${mode}`,
  });
  const root = (await readImageFile(`${dir}/${c.t.pid}.elf`)).process;
  const pid = which(root);
  return pid === root.pid ? root : (await readImageFile(`${dir}/${pid}.elf`)).process;
}

const main = (p: ProcessImage) => p.threads.find((t) => t.tid === p.pid)!.creds!;

Deno.test(
  "switched uids/gids, groups, keep-caps, kept capabilities and a pipe's owner survive a round trip",
  withTargets(async () => {
    const p = await roundTrip("switched");
    const c = main(p);
    assert.deepEqual(c.uid, [1001, 1002, 0, 1002]);
    assert.deepEqual(c.gid, [1001, 1002, 1003, 1002]);
    assert.deepEqual(c.groups, [100, 2000, 3000]);
    assert.equal(BigInt(c.capEff), (1n << 5n) | (1n << 10n)); // cap_kill, cap_net_bind_service
    assert.equal(c.keepCaps, true);
    assert.equal(p.attrs?.dumpable, 1);
  }),
);

Deno.test(
  "ambient capabilities, locked securebits, bounding set and no_new_privs survive a round trip",
  withTargets(async () => {
    const c = main(await roundTrip("ambient"));
    assert.equal(BigInt(c.capAmb), (1n << 10n) | (1n << 13n));
    assert.equal(c.securebits, 0xd3);
    assert.equal(c.noNewPrivs, true);
    assert.equal((BigInt(c.capBnd) >> 16n) & 1n, 0n, "cap_sys_module still in the bounding set");
  }),
);

Deno.test(
  "threads with credentials different from each other keep them, each its own, dumped twice",
  withTargets(async () => {
    const p = await roundTrip("threads", ["main", "t1", "t2"], undefined, 2);
    const uids = p.threads.map((t) => t.creds!.uid.join(" ")).sort();
    assert.deepEqual(uids, ["0 1500 0 1500", "1101 1102 1103 1102", "1201 1201 1201 1201"]);
    assert.equal(p.threads.filter((t) => t.creds!.noNewPrivs).length, 1);
  }),
);

Deno.test(
  "fs uid and fs gid other than the effective ones survive a round trip",
  withTargets(async () => {
    const c = main(await roundTrip("fsids"));
    assert.deepEqual(c.uid, [1001, 1002, 1003, 1003]);
    assert.deepEqual(c.gid, [2001, 2002, 2003, 2005]);
  }),
);

Deno.test(
  "a tree whose child switched credentials while its parent stayed root: each gets its own; a shared pipe keeps its owner",
  withTargets(async () => {
    const child = await roundTrip("tree", ["main", "child"], (root) => {
      assert.deepEqual(main(root).uid, [0, 0, 0, 0]);
      return root.children[0];
    });
    assert.deepEqual(main(child).uid, [1001, 1002, 0, 1002]);
  }),
);

Deno.test(
  "restore refuses capabilities the restorer does not have (pre-flight, one line, nothing created)",
  withTargets(async () => {
    const c = await startTriggered("rt_creds", READY, { extra: ["switched"] });
    const dir = await tempImageDir();
    await checkpoint(c.t.pid, { dir });
    await c.t.wait();
    const r = await runCli(["restore", dir], {
      wrapper: ["setpriv", "--bounding-set", "-net_bind_service"],
    });
    assertOneLineError(
      r,
      1,
      new RegExp(
        `^cryo: cannot restore: process ${c.t.pid} thread ${c.t.pid} holds cap_net_bind_service .*which this restorer does not have$`,
      ),
      "restore without cap_net_bind_service",
    );
    assert.ok(!pathExists(`/proc/${c.t.pid}`), "the refused restore created the process");
    // With every capability the same image restores.
    await restore(dir);
    c.t.resetAfterRestore();
    await Deno.writeTextFile(c.trigger, "");
    assertChecksPassed(c.t, [...threadChecks("main"), "dumpable"], await c.t.wait());
  }),
);

/**
 * Dumps rt_creds in `mode`, lets `edit` change the loaded plan (before or
 * after compiling it again), runs the restore session and returns its error.
 */
async function failingRestore(
  mode: string,
  edit: (image: ProcessImage) => void,
  recompile: boolean,
): Promise<{ pid: number; error: RestoreError }> {
  const c = await startTriggered("rt_creds", READY, { extra: [mode] });
  const dir = await tempImageDir();
  await checkpoint(c.t.pid, { dir });
  await c.t.wait();
  const plan = await planRestore(dir);
  for (const u of plan.units) edit(u.image);
  if (recompile) {
    const compiled = compileTree(plan.units.map((u) => u.image), {
      pathOf: (pid) => plan.units.find((u) => u.image.pid === pid)!.path,
      rootPid: plan.manifest.rootPid,
    });
    for (const u of plan.units) u.compiled = compiled.processes.get(u.image.pid)!;
  }
  const provided = await ProvidedFds.open(plan.ptys, plan.ghosts, plan.dir);
  const session = new RestoreSession(plan.units, undefined, undefined, provided);
  let error: unknown;
  try {
    session.run();
  } catch (e) {
    error = e;
  }
  if (!(error instanceof RestoreError)) {
    c.t.resetAfterRestore();
    throw new Error(`the restore did not fail with a RestoreError: ${error}`);
  }
  assert.ok(!pathExists(`/proc/${c.t.pid}`), "the failed restore left the process behind");
  return { pid: c.t.pid, error };
}

Deno.test(
  "a credentials step the kernel refuses fails the restore, naming the thread and the step",
  withTargets(async () => {
    // Unknown securebits: PR_SET_SECUREBITS fails with EPERM.
    const { pid, error } = await failingRestore("switched", (p) => {
      for (const t of p.threads) t.creds!.securebits |= 1 << 30;
    }, true);
    assert.match(
      error.message,
      new RegExp(
        `^cannot restore the credentials of process ${pid} \\(thread ${pid}\\): op #\\d+ \\(prctl\\) failed: EPERM \\[credentials: securebits 0x40000010\\]$`,
      ),
    );
  }),
);

Deno.test(
  "a thread's own-state step refused in its run with its credentials fails the restore, naming the thread and the step",
  withTargets(async () => {
    // A misaligned rseq area (the kernel wants 32-byte alignment): rseq fails with EINVAL in
    // the own-state section that goes on into the thread's credentials (thread_state.ts).
    let tid = 0;
    const { pid, error } = await failingRestore("threads", (p) => {
      const t = p.threads.find((t) => t.tid !== p.pid)!;
      tid = t.tid;
      t.rseq = { addr: "0x1001", len: 32, sig: "0x53053053", flags: 0 };
    }, true);
    assert.match(
      error.message,
      new RegExp(
        `^cannot restore the state or the credentials of process ${pid} \\(thread ${tid}\\): op #\\d+ \\(rseq\\) failed: EINVAL \\[thread ${tid}: rseq\\]$`,
      ),
    );
  }),
);

Deno.test(
  "credentials that differ from the record after the restore fail it with one line",
  withTargets(async () => {
    // The program restores the recorded groups; the record is changed afterwards.
    const { pid, error } = await failingRestore("fsids", (p) => {
      p.threads[0].creds!.groups = [4242];
    }, false);
    assert.match(
      error.message,
      new RegExp(
        `^restored credentials of process ${pid} thread ${pid} differ from the image: groups \\[.*\\], recorded \\[4242\\]$`,
      ),
    );
  }),
);

Deno.test(
  "an image without recorded credentials (older cryo) is refused before anything is created",
  withTargets(async () => {
    const c = await startTriggered("rt_creds", READY, { extra: ["threads"] });
    const dir = await tempImageDir();
    await checkpoint(c.t.pid, { dir });
    await c.t.wait();
    const plan = await planRestore(dir);
    const images = plan.units.map((u) => u.image);
    for (const t of images[0].threads.slice(1)) delete t.creds;
    const others = images[0].threads.slice(1).map((t) => t.tid).join(", ");
    assert.throws(
      () => compileTree(images, { pathOf: () => "/nonexistent", rootPid: c.t.pid }),
      (e: unknown) => {
        assert.ok(e instanceof UnsupportedError, String(e));
        assert.equal(
          e.message,
          `the tree cannot be restored: process ${c.t.pid} threads ${others}: no credentials recorded (image written by an older cryo)`,
        );
        return true;
      },
    );
  }),
);

const CREDS: ThreadCredentials = {
  uid: [1001, 1002, 0, 1002],
  gid: [5, 6, 7, 8],
  groups: [3, 4],
  capInh: "0x400",
  capPrm: "0x420",
  capEff: "0x20",
  capBnd: "0xfffffffff",
  capAmb: "0x400",
  securebits: 0x10,
  keepCaps: true,
  noNewPrivs: true,
};

Deno.test("credentials sections: one per thread after the program's END, privileges dropped in order", () => {
  const proc = {
    pid: 10,
    threads: [
      { tid: 10, creds: CREDS },
      { tid: 11, creds: { ...CREDS, noNewPrivs: false } },
      { tid: 12, creds: { ...CREDS } },
    ],
  } as unknown as ProcessImage;
  const p = new ProgramBuilder(0x10000n);
  p.end("main program");
  const sections = emitCredsSections(p, proc, 40);
  const built = p.build();
  assert.deepEqual(sections.threads.map((s) => s.tid), [10, 11, 12]);
  assert.equal(sections.threads[2].op, sections.threads[0].op, "equal credentials share a section");
  const names = (from: number) => {
    const out: string[] = [];
    for (let i = from; built.ops[i].nr !== 0xffffffff; i++) {
      const op = built.ops[i];
      out.push(op.nr === SYS.prctl ? `prctl ${op.args[0]}` : syscallName(op.nr));
    }
    return out;
  };
  const first = names(sections.threads[0].op);
  // setgroups, setresgid, setfsgid; capset; no-fixup securebits; setresuid; bounding-set
  // drops of 36..40 (0xfffffffff holds 0..35); ambient clear and raise; securebits; capset;
  // no_new_privs last.
  assert.deepEqual(first, [
    "setgroups",
    "setresgid",
    "setfsgid",
    "capset",
    "prctl 28",
    "setresuid",
    "prctl 24",
    "prctl 24",
    "prctl 24",
    "prctl 24",
    "prctl 24",
    "prctl 47",
    "prctl 47",
    "prctl 28",
    "capset",
    "prctl 38",
    "gettid",
  ]);
  // The run's done mark last (its tid, into the run's area: creds_restore.ts).
  const mark = built.ops[sections.threads[0].op + first.length - 1];
  assert.equal(mark.store, RUN_DONE_SLOT);
  assert.equal(names(sections.threads[1].op).at(-2), "capset", "no no_new_privs for thread 11");
  assert.ok(sections.threads[0].op > 0, "the sections come after the main program's END");
});

Deno.test("securebits recorded as 0 are read back by the section itself, before its END", () => {
  const proc = {
    pid: 10,
    threads: [{ tid: 10, creds: { ...CREDS, securebits: 0, keepCaps: false } }, {
      tid: 11,
      creds: CREDS,
    }],
  } as unknown as ProcessImage;
  const p = new ProgramBuilder(0x10000n);
  p.end("main program");
  const sections = emitCredsSections(p, proc, 40);
  const ops = p.build().ops;
  const endOf = (from: number) => ops.findIndex((o, i) => i >= from && o.nr === 0xffffffff);
  const end = endOf(sections.threads[0].op);
  const [get, fail, mark] = [ops[end - 3], ops[end - 2], ops[end - 1]];
  assert.equal(get.nr, SYS.prctl);
  assert.equal(get.args[0], 27n, "PR_GET_SECUREBITS");
  assert.equal(get.jumpIfZeroTo, end - 1, "0 read back: on to the done mark and the section's END");
  assert.equal(mark.nr, SYS.gettid);
  assert.equal(mark.store, RUN_DONE_SLOT);
  assert.equal(fail.nr, SYS.prctl);
  assert.equal(fail.args[0], 0xffffffffffffffffn, "otherwise an unknown prctl option: FAIL");
  assert.ok(!fail.allowFail);
  assert.match(fail.comment ?? "", /securebits read back not 0/);
  // Recorded securebits 0x10: read back by the engine (a prctl in the thread), no check here.
  const other = endOf(sections.threads[1].op);
  assert.equal(ops[other - 1].nr, SYS.gettid);
  assert.notEqual(ops[other - 2].args[0], 0xffffffffffffffffn);
  assert.notEqual(ops[other - 3].args[0], 27n);
});

Deno.test("credentials pre-flight and read-back comparison", () => {
  const proc = { pid: 10, threads: [{ tid: 11, creds: CREDS }] } as unknown as ProcessImage;
  assert.deepEqual(credsProblems([proc], 0xfffffffffn), []);
  assert.deepEqual(credsProblems([proc], 0xfffffffffn & ~(1n << 10n)), [
    "process 10 thread 11 holds cap_net_bind_service (in its capability sets or bounding set), which this restorer does not have",
  ]);
  assert.match(credsProblems([], 0xffn)[0], /needs cap_setpcap, which this restorer/);
  assert.deepEqual(credsDifferences(CREDS, { ...CREDS }), []);
  assert.deepEqual(credsDifferences(CREDS, { ...CREDS, uid: [0, 0, 0, 0], capEff: "0x0" }), [
    "uids 0 0 0 0, recorded 1001 1002 0 1002",
    "CapEff 0x0, recorded 0x20",
  ]);
});
