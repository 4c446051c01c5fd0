/**
 * Fork snapshots for a tree of several processes (engine/dump/mod.ts,
 * engine/dump/snapshot_choice.ts): tests/targets/rt_treesnap.c is a root
 * and two children that write their memory all the time and share half of
 * it copy-on-write. Where page table entry changes are costly
 * (`CRYO_PTE_COST=costly`) its dump left running is frozen once instead of
 * pre-copied, every process read from a snapshot of its own; each process,
 * the original after the dump and the restored one, finds every page as of
 * its generation count and the shared half still shared (pagemap bit 56),
 * and the children's images hold only what differs from the root's. A
 * process whose snapshot a fork would not hold (MADV_WIPEONFORK) is copied
 * frozen in the same freeze while the others are read from their
 * snapshots; so is one whose fork failed. The forks are taken at once (all
 * three in flight together). With a process a fork would not hold the
 * choice keeps the tree's pre-copy. A cryo killed
 * once the third snapshot is taken leaves the tree running and every
 * snapshot dead.
 *
 * @module
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { forkSnapshotStats, snapshotsInFlight } from "../engine/dump/fork_snapshot.ts";
import { snapshotChoiceStats, treeSnapshotRule } from "../engine/dump/snapshot_choice.ts";
import { readImageFile } from "../engine/image/reader.ts";
import { inheritShortcut } from "../engine/memory/inherit.ts";
import { readPagemap } from "../engine/proc/pagemap.ts";
import { restore } from "../engine/restore/mod.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { startTriggered, tempImageDir, type TriggeredTarget } from "./helpers/roundtrip.ts";
import { adoptPid, withTargets } from "./helpers/targets.ts";
import { repoRoot } from "./helpers/commands.ts";
import { sleep, waitUntil } from "./helpers/wait.ts";

const MiB = 1024 * 1024;
const PAGE = 4096;
const READY = /^ready pid=(\d+) children=([\d,]+) region=0x([0-9a-f]+) pages=(\d+)$/m;

/** The target's region in MiB: 16 MiB private to each process, 16 MiB shared by all. */
const REGION_MIB = 32;

/** The checks of the root and of each of its two children. */
function checksOf(wipe: boolean): string[] {
  const each = ["pages", "shared", "writes", "rewrite"];
  return [
    ...each,
    "children",
    ...each.map((c) => `child1-${c}`),
    ...each.map((c) => `child2-${c}`),
    ...(wipe ? ["child2-wipe"] : []),
  ];
}

/**
 * Runs `fn` with CRYO_PTE_COST=costly and trees chosen from `largest` bytes
 * in their largest process (the target's 32 MiB ones, not 256 MiB).
 */
async function costly<T>(fn: () => Promise<T>, largest = 0): Promise<T> {
  Deno.env.set("CRYO_PTE_COST", "costly");
  const was = treeSnapshotRule.largestBytes;
  treeSnapshotRule.largestBytes = largest;
  try {
    return await fn();
  } finally {
    treeSnapshotRule.largestBytes = was;
    Deno.env.delete("CRYO_PTE_COST");
  }
}

/**
 * rt_treesnap started with two children (adopted: killed at the end whatever happens), in
 * `mode` when given ("wipe", "own": see the target).
 */
async function startTree(mode?: "wipe" | "own") {
  const rt = await startTriggered("rt_treesnap", READY, {
    extra: [String(REGION_MIB), "2", ...(mode ? [mode] : [])],
    timeoutMs: 30000,
  });
  const children = rt.ready[2].split(",").map(Number);
  for (const c of children) adoptPid(c);
  const region = BigInt(`0x${rt.ready[3]}`);
  const pages = Number(rt.ready[4]);
  return { ...rt, children, region, pages };
}

/** The children of every thread of `pid`. */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const e of Deno.readDirSync(`/proc/${pid}/task`)) {
    const text = Deno.readTextFileSync(`/proc/${pid}/task/${e.name}/children`).trim();
    if (text) out.push(...text.split(" ").map(Number));
  }
  return out.sort((a, b) => a - b);
}

/** Pages of [start, start + pages) that are the same present frame in both processes. */
function sameFrames(a: number, b: number, start: bigint, pages: number): number {
  const ea = readPagemap(a, start, start + BigInt(pages * PAGE));
  const eb = readPagemap(b, start, start + BigInt(pages * PAGE));
  let n = 0;
  for (let i = 0; i < pages; i++) {
    if (ea.present(i) && eb.present(i) && ea.pfn(i) !== 0 && ea.pfn(i) === eb.pfn(i)) n++;
  }
  return n;
}

/** Bytes of page data the image of `pid` in `dir` stores. */
async function savedBytes(dir: string, pid: number): Promise<number> {
  const image = await readImageFile(`${dir}/${pid}.elf`);
  return image.process.mappings.reduce((n, m) => n + m.pages.reduce((k, r) => k + r.length, 0), 0);
}

/**
 * Triggers the original tree (its checks after the dump), then restores
 * `dir` and triggers it again: every process passes its checks both times,
 * and the restored children share the second half with the root again.
 */
async function originalThenRestored(
  rt: TriggeredTarget & { children: number[]; region: bigint; pages: number },
  dir: string,
  checks: readonly string[],
): Promise<void> {
  const { t, trigger } = rt;
  await Deno.writeTextFile(trigger, "");
  assertChecksPassed(t, checks, await t.wait(30000), { what: "original after the dump" });
  await Deno.remove(trigger);
  const tree = await restore(dir);
  t.resetAfterRestore();
  for (const pid of tree.pids) if (pid !== t.pid) adoptPid(pid);
  assert.deepEqual([...tree.pids].sort(), [t.pid, ...rt.children].sort());
  const half = rt.pages / 2;
  const second = rt.region + BigInt(half * PAGE);
  for (const c of rt.children) {
    assert.equal(sameFrames(t.pid, c, second, half), half, `restored child ${c}: shared again`);
  }
  await Deno.writeTextFile(trigger, "");
  assertChecksPassed(t, checks, await t.wait(30000), { run: 2, what: "restored" });
}

Deno.test(
  "tree snapshot: costly entry changes: a tree of three whose pre-copy pays is frozen once, each process read from its own snapshot, exactly, its sharing kept",
  withTargets(async () => {
    const rt = await startTree();
    const { t, children, region, pages } = rt;
    const half = pages / 2;
    const second = region + BigInt(half * PAGE);
    for (const c of children) assert.equal(sameFrames(t.pid, c, second, half), half);
    // Its processes are small: by default the tree keeps its pre-copy.
    const small = await costly(
      async () => checkpoint(t.pid, { dir: await tempImageDir(), leaveRunning: true, sync: false }),
      treeSnapshotRule.largestBytes,
    );
    assert.ok(small.stats.precopy, "below treeSnapshotRule: pre-copied");
    const { made, reapFailed } = forkSnapshotStats;
    const { chosen, trees } = snapshotChoiceStats;
    const dir = await tempImageDir();
    snapshotsInFlight.most = 0;
    const dump = await costly(() => checkpoint(t.pid, { dir, leaveRunning: true }));
    assert.equal(dump.stats.precopy, undefined, "no pre-copy");
    assert.equal(snapshotsInFlight.most, 3, "the three forks run at once");
    assert.equal(snapshotChoiceStats.chosen, chosen + 1, "the snapshots chosen");
    assert.equal(snapshotChoiceStats.trees, trees + 1, "for a tree of several processes");
    assert.equal(forkSnapshotStats.made, made + 3, "one snapshot per process");
    assert.equal(forkSnapshotStats.reapFailed, reapFailed, "each reaped in its target");
    assert.equal(dump.stats.processes, 3);
    // No snapshot left behind: the root has its two children, they have none.
    assert.deepEqual(childrenOf(t.pid), [...children].sort((a, b) => a - b));
    for (const c of children) assert.deepEqual(childrenOf(c), [], `child ${c}: no child left`);
    // The second half is still one frame for all (the snapshots' reads unshared nothing).
    for (const c of children) assert.equal(sameFrames(t.pid, c, second, half), half);
    // The children's copies of the second half are stored once, in the root's image.
    const shared = dump.stats.sharedBytes ?? 0;
    assert.ok(shared >= 2 * half * PAGE, `${shared} bytes shared`);
    assert.ok(await savedBytes(dir, t.pid) >= REGION_MIB * MiB, "the root's region saved");
    for (const c of children) {
      const bytes = await savedBytes(dir, c);
      assert.ok(bytes >= half * PAGE && bytes < (half + 512) * PAGE, `child ${c}: ${bytes} bytes`);
    }
    await originalThenRestored(rt, dir, checksOf(false));
  }),
);

Deno.test(
  "tree snapshot: a process a fork would not hold (MADV_WIPEONFORK) is copied frozen beside the others' snapshots, exactly",
  withTargets(async () => {
    const rt = await startTree("wipe");
    const { made } = forkSnapshotStats;
    const dir = await tempImageDir();
    const dump = await checkpoint(rt.t.pid, { dir, leaveRunning: true, precopy: false });
    assert.equal(dump.stats.precopy, undefined);
    assert.equal(forkSnapshotStats.made, made + 2, "the root's and the first child's snapshots");
    for (const c of rt.children) assert.deepEqual(childrenOf(c), [], `child ${c}: no child left`);
    await originalThenRestored(rt, dir, checksOf(true));
  }),
);

Deno.test(
  "tree snapshot: a process whose fork fails while the others' run is copied frozen, exactly",
  withTargets(async () => {
    const rt = await startTree();
    const { made } = forkSnapshotStats;
    const dir = await tempImageDir();
    snapshotsInFlight.refuse = rt.children[0];
    let dump;
    try {
      dump = await checkpoint(rt.t.pid, { dir, leaveRunning: true, precopy: false });
    } finally {
      snapshotsInFlight.refuse = 0;
    }
    assert.equal(dump.stats.precopy, undefined);
    assert.equal(forkSnapshotStats.made, made + 2, "the root's and the second child's snapshots");
    for (const c of rt.children) assert.deepEqual(childrenOf(c), [], `child ${c}: no child left`);
    await originalThenRestored(rt, dir, checksOf(false));
  }),
);

Deno.test(
  "tree snapshot: costly entry changes: a tree with a process whose snapshot is not expected keeps its pre-copy",
  withTargets(async () => {
    const rt = await startTree("wipe");
    const { chosen } = snapshotChoiceStats;
    const { made } = forkSnapshotStats;
    const dir = await tempImageDir();
    const dump = await costly(() => checkpoint(rt.t.pid, { dir, leaveRunning: true }));
    assert.ok(dump.stats.precopy, "pre-copied");
    assert.equal(snapshotChoiceStats.chosen, chosen, "no snapshot chosen");
    assert.equal(forkSnapshotStats.made, made, "no snapshot taken");
    await originalThenRestored(rt, dir, checksOf(true));
  }),
);

/** What inheritance decided in the images of `pids` in `dir`: inherited mappings and their pages. */
async function inheritedIn(dir: string, pids: readonly number[]) {
  const out = [];
  for (const pid of pids) {
    const p = (await readImageFile(`${dir}/${pid}.elf`)).process;
    out.push({
      pid,
      inheritsMemory: p.inheritsMemory ?? false,
      // Not the stack (the first dump's injected calls may touch a page below its red zone).
      inherited: p.mappings.filter((m) => m.inherited && m.name !== "[stack]")
        .map((m) => `${m.start}-${m.end} ${m.pages.length} ${m.discard?.length ?? 0}`),
    });
  }
  return out;
}

Deno.test(
  "tree snapshot: a child's region of its own at its parent's address is settled from its smaps (no pagemap read), the images those of the page comparison",
  withTargets(async () => {
    const rt = await startTree("own");
    const { t, children, pages } = rt;
    const pids = [t.pid, ...children];
    const dump = async (smaps: boolean) => {
      const dir = await tempImageDir();
      const before = { ...inheritShortcut };
      inheritShortcut.smaps = smaps;
      try {
        // Frozen once as the bench's tree is (the estimate lists each child's size).
        const d = await costly(() => checkpoint(t.pid, { dir, leaveRunning: true, sync: false }));
        assert.equal(d.stats.precopy, undefined);
      } finally {
        inheritShortcut.smaps = true;
      }
      return {
        dir,
        bySmaps: inheritShortcut.bySmaps - before.bySmaps,
        smapsAhead: inheritShortcut.smapsAhead - before.smapsAhead,
        pagemapPages: inheritShortcut.pagemapPages - before.pagemapPages,
      };
    };
    const fast = await dump(true);
    const full = await dump(false);
    // The premise: without the shortcut each child's region is read from its pagemap.
    assert.equal(full.bySmaps, 0);
    assert.ok(full.pagemapPages >= 2 * pages, `${full.pagemapPages} pagemap entries read`);
    assert.ok(fast.bySmaps >= 2, `${fast.bySmaps} mappings settled from smaps`);
    assert.ok(fast.pagemapPages < pages / 4, `${fast.pagemapPages} pagemap entries read`);
    assert.equal(fast.smapsAhead, 2, "each child's smaps read beside the collect");
    assert.deepEqual(await inheritedIn(fast.dir, pids), await inheritedIn(full.dir, pids));
    for (const c of children) {
      const bytes = await savedBytes(fast.dir, c);
      assert.ok(bytes >= pages * PAGE, `child ${c}: its region stored (${bytes} bytes)`);
    }
    await Deno.writeTextFile(rt.trigger, "");
    assertChecksPassed(t, checksOf(false), await t.wait(30000), { what: "original" });
    await Deno.remove(rt.trigger);
    const tree = await restore(fast.dir);
    t.resetAfterRestore();
    for (const pid of tree.pids) if (pid !== t.pid) adoptPid(pid);
    await Deno.writeTextFile(rt.trigger, "");
    assertChecksPassed(t, checksOf(false), await t.wait(30000), { run: 2, what: "restored" });
    await Deno.remove(full.dir, { recursive: true });
  }),
);

/** The state letter of `pid` ("" when gone). */
function stateOf(pid: number): string {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  } catch {
    return "";
  }
}

Deno.test(
  "tree snapshot: cryo killed once every process has its snapshot leaves the tree running and every snapshot dead",
  withTargets(async () => {
    const rt = await startTree();
    const { t, children } = rt;
    const tree = [t.pid, ...children];
    const dir = await tempImageDir();
    const cryo = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        `${repoRoot}cli.ts`,
        "dump",
        String(t.pid),
        "--dir",
        dir,
        "--leave-running",
        "--no-precopy",
        "--no-sync",
      ],
      cwd: repoRoot,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
      env: { NO_COLOR: "1", CRYO_TEST_PAUSE_AT: "snapshot:3" },
    }).spawn();
    let done = false;
    const output = cryo.output().then((o) => {
      done = true;
      return o;
    });
    await waitUntil("cryo at its third snapshot", () => done || stateOf(cryo.pid) === "T", 60000);
    if (done) {
      throw new Error(`cryo exited first: ${new TextDecoder().decode((await output).stderr)}`);
    }
    const snaps = tree.flatMap((pid) => childrenOf(pid).filter((c) => !tree.includes(c)));
    assert.equal(snaps.length, 3, `one snapshot per process: ${snaps}`);
    cryo.kill("SIGKILL");
    await output;
    // Each was told to die with cryo: killed, a zombie of its target (exit signal 0) or gone.
    await waitUntil("the snapshots' end", () => snaps.every((s) => ["Z", ""].includes(stateOf(s))));
    await sleep(50);
    for (const s of snaps) {
      assert.ok(["Z", ""].includes(stateOf(s)), `snapshot ${s}: ${stateOf(s)}`);
    }
    await Deno.writeTextFile(rt.trigger, "");
    assertChecksPassed(t, checksOf(false), await t.wait(30000), {
      what: "the tree after a killed dump",
    });
  }),
);
