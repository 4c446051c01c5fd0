/**
 * The dump's restorability check compiles with `checkOnly` (size-only
 * program builders, engine/program/builder.ts): it must give exactly the
 * verdict of the full compile a restore runs. For the images of several
 * round-trip targets (many mappings, threads, a tree, shared fds, timers,
 * memory flags), and for images changed to be refused or to fail, both
 * compiles are run and their verdicts (and every size and plan) compared.
 *
 * @module
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import type { ProcessImage } from "../engine/model.ts";
import { verifyImageDir } from "../engine/image/manifest.ts";
import { compileTree, type TreeCompileOptions } from "../engine/restore/restorable.ts";
import { ProgramBuilder } from "../engine/program/builder.ts";
import { startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

/** What one compile gives: its error, or every size and plan of the compiled tree. */
function verdict(images: ProcessImage[], opts: TreeCompileOptions): string {
  let tree;
  try {
    tree = compileTree(structuredClone(images), opts);
  } catch (e) {
    return `${(e as Error).constructor.name}: ${(e as Error).message}`;
  }
  const big = (_: string, v: unknown) => typeof v === "bigint" ? `0x${v.toString(16)}` : v;
  const processes = [...tree.processes].map(([pid, c]) => ({
    pid,
    blob: c.bootstrap.blob.length,
    programs: c.bootstrap.programs.map((p) => [p.base, p.opsAddress, p.opCount, p.end]),
    gadget: c.syscallGadget,
    scratch: c.vdsoScratch,
    fds: c.fds,
    creds: c.creds,
    threads: c.threadSections,
    deferred: c.deferred,
    shared: c.sharedCreated,
  }));
  return JSON.stringify({ processes, ptys: tree.ptys, ghosts: [...tree.ghosts] }, big);
}

/** Asserts that the check-only compile gives the full compile's verdict; returns it. */
function assertSameVerdict(images: ProcessImage[], opts: TreeCompileOptions): string {
  const full = verdict(images, opts);
  const check = verdict(images, { ...opts, checkOnly: true });
  // The same verdict; only a restore suggests its --inherit-fd option (a dump has none).
  assert.equal(check, full.replace(/ \(use --inherit-fd \d+=PATH\)/g, ""));
  return full;
}

/** Dumps a started target (left running) and reads its images back. */
async function dumpImages(
  pid: number,
): Promise<{ images: ProcessImage[]; opts: TreeCompileOptions }> {
  const dir = await tempImageDir();
  const { inheritFdsNeeded } = await checkpoint(pid, { dir, leaveRunning: true });
  const { manifest, images } = await verifyImageDir(dir, {});
  const opts: TreeCompileOptions = {
    pathOf: (p) => `${dir}/${manifest.processes.find((e) => e.pid === p)!.file}`,
    rootPid: manifest.rootPid,
    ghosts: manifest.ghosts,
    // What a restore must be given (a pipe leading out of the tree), the check takes as given.
    ...(inheritFdsNeeded
      ? { inheritFds: new Map(inheritFdsNeeded.map((fd) => [fd, "fd:0"])) }
      : {}),
  };
  return { images: images.map((i) => i.process), opts };
}

const TARGETS: { name: string; passWork?: boolean; extra?: string[] }[] = [
  { name: "rt_maps", passWork: true, extra: ["300"] },
  { name: "rt_anon_runs", extra: ["200", "7"] },
  { name: "rt_threads" },
  { name: "rt_fdshare", passWork: true },
  { name: "rt_chainfork" },
  { name: "rt_timers" },
  { name: "rt_memflags" },
];

Deno.test(
  "the dump's check-only compile gives the full compile's verdict",
  withTargets(async () => {
    for (const target of TARGETS) {
      const { t } = await startTriggered(target.name, /^ready pid=(\d+)/m, target);
      const { images, opts } = await dumpImages(t.pid);
      const ok = assertSameVerdict(images, opts);
      assert.ok(ok.startsWith("{"), `${target.name}: ${ok}`);

      // A bootstrap reservation too small for the program: the size refusal.
      const small = structuredClone(images);
      small[0].bootstrap = { ...small[0].bootstrap, size: (1 << 20) + 4096 };
      const tooBig = assertSameVerdict(small, opts);
      assert.match(tooBig, /does not fit the reserved bootstrap range/, target.name);

      // An image the compile refuses: an fd of a kind it cannot re-create.
      const refused = structuredClone(images);
      // deno-lint-ignore no-explicit-any
      (refused[0].fds as any[]).push({ ...refused[0].fds[0], fd: 900, kind: "no-such-kind" });
      assertSameVerdict(refused, opts);

      // A mapping whose end is below its start (an op argument out of range).
      const broken = structuredClone(images);
      const anon = broken[0].mappings.findIndex((m) => m.kind === "anon");
      const m = broken[0].mappings[anon];
      broken[0].mappings[anon] = { ...m, end: `0x${(BigInt(m.start) - 4096n).toString(16)}` };
      assertSameVerdict(broken, opts);
      await t.kill();
    }
  }),
);

Deno.test("a size-only program builder checks and lays out like the full one", () => {
  for (const sizeOnly of [false, true]) {
    const p = new ProgramBuilder(0x1000n, undefined, sizeOnly);
    p.op(1, [1, p.cstring("abc"), 3], { comment: "write" });
    p.opsOfNumbers(10, 3, [0x1000, 4096, 1, 0x2000, 4096, 3], 2);
    assert.throws(() => p.op(1, [-(2 ** 60)]), /not a safe integer/);
    assert.throws(() => p.op(1, [1n << 70n]), /does not fit in 64 bits/);
    assert.throws(() => p.opsOfNumbers(10, 3, [1, -1, 1], 1), /not a non-negative safe integer/);
    p.op(2, [], { jumpIfZeroTo: "nowhere" });
    assert.throws(() => p.build(), /undefined label nowhere/);
  }
  const sized = [false, true].map((sizeOnly) => {
    const p = new ProgramBuilder(0x1000n, undefined, sizeOnly);
    p.op(1, [1, p.cstring("abc"), 3]);
    p.reserve(13);
    p.u64s([1, 2, 3]);
    p.opsOfNumbers(10, 3, [0x1000, 4096, 1], 1);
    p.label("x").end();
    p.op(2, [], { jumpIfZeroTo: "x" });
    const b = p.build();
    return [b.bytes.length, b.opCount, b.opsAddress, b.dataAddress, b.end];
  });
  assert.deepEqual(sized[1], sized[0]);
});
