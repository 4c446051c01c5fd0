/**
 * `restore --lazy` (engine/memory/lazy*.ts): the tree runs before its
 * private anonymous memory is in, and cryo serves the pages through each
 * process's userfaultfd. tests/targets/rt_lazy.c checks its whole memory
 * while it is served: the trigger file exists before the restore, so the
 * target's checks start at its first instruction.
 *
 * - one thread: every saved page, the never-touched pages (zeros), pages
 *   dropped with MADV_DONTNEED after the restore (zeros, EVENT_REMOVE), a
 *   block moved with mremap before its pages are in (EVENT_REMAP), the
 *   heap; then everything rewritten and read back;
 * - four threads faulting interleaved pages at once;
 * - a tree of two processes (the child's own memory lazy, the parent's
 *   eager: it shares memory with the child);
 * - a fork at the first instruction (EVENT_FORK): the child checks and
 *   rewrites the memory it got, its missing pages served through its own
 *   userfaultfd;
 * - cryo SIGKILLed while serving (CRYO_TEST_PAUSE_AT=lazy-serve; the
 *   trigger written once cryo is stopped, the target blocked on a missing
 *   page): the watchdog kills the target, which never runs on with zero
 *   pages;
 * - once every page is in, no userfaultfd is left in the process;
 * - nothing before the tree runs is done per page: the server's plan has
 *   one entry per saved run of the lazy mappings, and the pages it copies
 *   before the release are only the hot ones and what they brought in;
 * - an image of a pre-copy chain (served from the flattened copy);
 * - the CLI: with --detach it returns at once and a background process
 *   serves the rest (engine/memory/lazy_detached.ts); in the foreground
 *   it serves while it waits; refused with a private pid namespace.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { restore } from "../engine/restore/mod.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { adoptPid, becomeSubreaper, type Target, withTargets } from "./helpers/targets.ts";
import { startPaused } from "./helpers/kill_anywhere.ts";
import { isAlive, ppidOf, statusField } from "./helpers/proc.ts";
import { waitUntil } from "./helpers/wait.ts";
import { rawSyscall } from "../ffi/libc.ts";
import { SYS } from "../ffi/sysno.ts";
import { assertCliOk, assertOneLineError, runCli } from "./helpers/commands.ts";
import { readImageFile } from "../engine/image/reader.ts";
import { imageFileName } from "../engine/image/manifest.ts";
import { hotPages, lazyRegions } from "../engine/memory/lazy.ts";

const READY = /^ready pid=(\d+) child=(\d+)$/m;
const CHECKS = ["dropped", "moved", "region", "rewrite", "heap"];

/**
 * Whether the restored process's main thread waits in a page fault the
 * server has not answered (its kernel stack is in the userfaultfd handler).
 */
function waitsInUserfault(pid: number): boolean {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/stack`).includes("handle_userfault");
  } catch {
    return false;
  }
}

/**
 * Dumps rt_lazy in `mode` (killing it), writes the trigger, restores it
 * lazily and serves it. With `faultFirst`, serving starts only once the
 * target waits in a fault, so that the fault path is taken whatever the
 * scheduler does (otherwise the background pass may bring every page in
 * before the target first runs).
 */
async function lazyRoundTrip(mode: string, mib = 32, faultFirst = false) {
  const { t, trigger, ready } = await startTriggered("rt_lazy", READY, {
    extra: [String(mib), mode],
  });
  const dir = await tempImageDir();
  await checkpoint(t.pid, { dir });
  await t.wait();
  await Deno.writeTextFile(trigger, "");
  const tree = await restore(dir, { lazy: true });
  t.resetAfterRestore();
  for (const pid of tree.pids) if (pid !== t.pid) adoptPid(pid);
  assert.ok(tree.lazy, "the restore is lazy");
  const before = tree.lazy.progress.remaining;
  if (faultFirst) await waitUntil("the target's first fault", () => waitsInUserfault(t.pid));
  tree.lazy.serve();
  return { t, tree, before, child: Number(ready[2]), dir };
}

function uffdsOf(pid: number): number {
  try {
    return [...Deno.readDirSync(`/proc/${pid}/fd`)].filter((e) => {
      try {
        return Deno.readLinkSync(`/proc/${pid}/fd/${e.name}`) === "anon_inode:[userfaultfd]";
      } catch {
        return false;
      }
    }).length;
  } catch {
    return 0;
  }
}

Deno.test(
  "restore --lazy: one thread checks its whole memory while it is served",
  withTargets(async () => {
    const { t, tree, before, dir } = await lazyRoundTrip("mem", 32, true);
    assert.equal(tree.lazy!.failure, undefined);
    // Before the release: one plan entry per saved run, pages copied only around the hot ones.
    const proc = (await readImageFile(`${dir}/${imageFileName(t.pid)}`)).process;
    const runs = lazyRegions(proc).reduce((n, r) => n + r.runs.length, 0);
    const hot = hotPages(proc).size;
    const work = tree.lazy!.startWork;
    assert.equal(work.planEntries, runs, `plan entries: ${JSON.stringify(work)}`);
    assert.ok(runs * 4 < before, `${runs} runs for ${before} pages`);
    assert.ok(work.presentPages <= 512 * hot, `present at take-over: ${JSON.stringify(work)}`);
    assert.ok(work.pagesCopied <= work.presentPages + 16 * hot, `copied: ${JSON.stringify(work)}`);
    assert.ok(before > 32 * 256 / 2, `pages to serve: ${before}`);
    assert.ok(tree.lazy!.progress.faults > 0, "the target faulted pages in");
    assert.equal(tree.lazy!.progress.remaining, 0);
    assert.equal(uffdsOf(t.pid), 0, "no userfaultfd left in the process");
    assertChecksPassed(t, CHECKS, await t.wait(60000), { what: "lazily restored target" });
  }),
);

Deno.test(
  "restore --lazy: four threads fault interleaved pages at once",
  withTargets(async () => {
    const { t, tree } = await lazyRoundTrip("threads");
    assert.equal(tree.lazy!.failure, undefined);
    assertChecksPassed(t, CHECKS, await t.wait(60000), { what: "threads" });
  }),
);

Deno.test(
  "restore --lazy: a tree of two processes (the child's own memory served lazily)",
  withTargets(async () => {
    const { t, tree, child, before } = await lazyRoundTrip("tree", 16);
    assert.deepEqual(tree.pids.toSorted(), [t.pid, child].toSorted());
    assert.ok(before > 0, "the child's own memory was lazy");
    assert.equal(tree.lazy!.failure, undefined);
    assertChecksPassed(t, ["region", "rewrite", "child"], await t.wait(60000), {
      what: "tree",
    });
  }),
);

Deno.test(
  "restore --lazy: a fork before the memory is in: the child's missing pages are served too",
  withTargets(async () => {
    const { t, tree } = await lazyRoundTrip("fork", 64);
    assert.equal(tree.lazy!.failure, undefined);
    assertChecksPassed(t, ["forked", "region", "rewrite"], await t.wait(60000), { what: "fork" });
  }),
);

Deno.test(
  "restore --lazy of a pre-copy chain (pre-dump, then a final dump with --parent)",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_lazy", READY, { extra: ["32", "mem"] });
    const d1 = await tempImageDir();
    await checkpoint(t.pid, { dir: d1, preDump: true });
    const dir = await tempImageDir();
    const dump = await checkpoint(t.pid, { dir, parent: d1 });
    assert.ok((dump.stats.parentReusedBytes ?? 0) > 0, "the final dump kept pages of its parent");
    await t.wait();
    await Deno.writeTextFile(trigger, "");
    const tree = await restore(dir, { lazy: true });
    t.resetAfterRestore();
    assert.ok(tree.lazy && tree.lazy.progress.remaining > 0, "lazy");
    tree.lazy.serve(); // from the flattened copy, removed once restore() returned: the fds hold it
    assert.equal(tree.lazy.failure, undefined);
    assertChecksPassed(t, CHECKS, await t.wait(60000), { what: "chain" });
  }),
);

Deno.test(
  "restore --lazy: cryo killed while serving: the target dies, never runs on zero pages",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_lazy", READY, { extra: ["64", "orphan"] });
    const dir = await tempImageDir();
    await checkpoint(t.pid, { dir });
    await t.wait();
    becomeSubreaper(); // the restored target, orphaned when cryo dies, comes back to this process
    const cli = await startPaused(["restore", "--lazy", dir], "lazy-serve:3");
    assert.equal(ppidOf(t.pid), cli.child.pid, "restored by the cryo under test");
    // Only now, with cryo stopped, may the checks start: they fault on pages
    // nobody serves (had they started at once, a fast target could get all
    // its pages through faults before the third chunk and finish).
    await startChecksAndBlock(t, trigger);
    cli.child.kill("SIGKILL");
    await cli.output;
    // Orphaned by cryo's death, it is reparented to this process (a subreaper): its status says how it died.
    const deadline = Date.now() + 30000;
    while (ppidOf(t.pid) !== Deno.pid && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 5));
    }
    t.resetAfterRestore();
    const st = await t.wait(30000);
    assert.deepEqual(
      [st.kind, st.kind === "signaled" ? st.signal : -1],
      ["signaled", 9],
      `killed by the watchdog (SIGKILL), not crashed on zero pages: ${JSON.stringify(st)}`,
    );
    // Checks of pages served before the kill may have passed; none may fail,
    // and the target must not have finished.
    assert.doesNotMatch(t.output(), /^(PASS|FAIL)$|^check \S+ FAIL/m, t.output());
  }),
);

Deno.test(
  "cryo restore --lazy --detach: a background server takes over, the target checks itself",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_lazy", READY, { extra: ["32", "orphan"] });
    const dir = await tempImageDir();
    await checkpoint(t.pid, { dir });
    await t.wait();
    await Deno.writeTextFile(trigger, "");
    becomeSubreaper(); // the detached target comes back to this process
    const r = await runCli(["restore", "--lazy", "--detach", dir]);
    assertCliOk(r, "restore --lazy --detach");
    assert.equal(r.stdout.trim(), String(t.pid));
    t.resetAfterRestore();
    assertChecksPassed(t, CHECKS, await t.wait(60000), { what: "restored by the CLI" });
  }),
);

Deno.test(
  "cryo restore --lazy --detach: the background server killed while serving: the target dies",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_lazy", READY, { extra: ["64", "orphan"] });
    const dir = await tempImageDir();
    await checkpoint(t.pid, { dir });
    await t.wait();
    becomeSubreaper(); // the target and the background server come back to this process
    // The background server inherits the pause point: it stops itself after its third chunk.
    const r = await runCli(["restore", "--lazy", "--detach", dir], {
      env: { CRYO_TEST_PAUSE_AT: "lazy-serve:3" },
    });
    assertCliOk(r, "restore --lazy --detach");
    let server: number | undefined;
    const deadline = Date.now() + 30000;
    while (server === undefined && Date.now() < deadline) {
      server = childrenOfSelf().find((pid) => {
        try {
          return Deno.readTextFileSync(`/proc/${pid}/cmdline`).includes("lazy_detached.ts") &&
            /^\d+ \(.*\) T /.test(Deno.readTextFileSync(`/proc/${pid}/stat`));
        } catch {
          return false;
        }
      });
      await new Promise((res) => setTimeout(res, 5));
    }
    assert.ok(server, "the background server stopped at its pause point");
    t.resetAfterRestore();
    await startChecksAndBlock(t, trigger); // with the server stopped (see the test above)
    Deno.kill(server, "SIGKILL");
    rawSyscall(SYS.wait4, server, null, 0, null);
    const st = await t.wait(30000);
    assert.deepEqual(
      [st.kind, st.kind === "signaled" ? st.signal : -1],
      ["signaled", 9],
      `killed by the watchdog: ${JSON.stringify(st)}\n${t.output()}`,
    );
    // Checks of pages served before the kill may have passed; none may fail,
    // and the target must not have finished.
    assert.doesNotMatch(t.output(), /^(PASS|FAIL)$|^check \S+ FAIL/m, t.output());
  }),
);

/**
 * Writes the trigger of a restored rt_lazy whose server is stopped, and
 * waits until the target is blocked on a page nobody serves (in its checks,
 * or already in its trigger polling).
 */
async function startChecksAndBlock(t: Target, trigger: string): Promise<void> {
  await Deno.writeTextFile(trigger, "");
  await waitUntil("the target blocked on a missing page", () => {
    assert.ok(isAlive(t.pid), `the target ended with its server stopped: ${t.output()}`);
    return blockedOnFault(t.pid);
  }, 30000);
}

/**
 * Whether `pid` sleeps in a userfault: its wchan says so; where the kernel
 * hides wchan, it sleeps outside the trigger polling's nanosleep.
 */
function blockedOnFault(pid: number): boolean {
  if (!statusField(pid, "State").startsWith("S")) return false;
  const wchan = Deno.readTextFileSync(`/proc/${pid}/wchan`).trim();
  if (wchan !== "" && wchan !== "0") return wchan === "handle_userfault";
  const nr = Deno.readTextFileSync(`/proc/${pid}/syscall`).split(" ")[0];
  return nr !== "35" && nr !== "230"; // nanosleep, clock_nanosleep
}

/** The children of this process (every thread's). */
function childrenOfSelf(): number[] {
  return [...Deno.readDirSync("/proc/self/task")].flatMap((e) =>
    Deno.readTextFileSync(`/proc/self/task/${e.name}/children`).trim().split(/\s+/).filter(Boolean)
      .map(Number)
  );
}

Deno.test(
  "cryo restore --lazy refuses a restore into a pid namespace",
  withTargets(async () => {
    const { t } = await startTriggered("rt_lazy", READY, { extra: ["1", "mem"] });
    const dir = await tempImageDir();
    await checkpoint(t.pid, { dir });
    await t.wait();
    const r = await runCli(["restore", "--lazy", "--new-pid-ns", dir]);
    assertOneLineError(r, 1, /--lazy is not supported for a restore into a pid namespace/, "pidns");
  }),
);

Deno.test(
  "cryo restore --lazy (foreground): serves the pages while it waits, exits with the tree's status",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_lazy", READY, { extra: ["32", "threads"] });
    const dir = await tempImageDir();
    await checkpoint(t.pid, { dir });
    await t.wait();
    await Deno.writeTextFile(trigger, "");
    const r = await runCli(["restore", "--lazy", dir]);
    assert.equal(r.code, 0, `exit ${r.code}: ${r.stderr}\n${t.output()}`);
    assertChecksPassed(t, CHECKS, { kind: "exited", pid: t.pid, code: 0 }, { what: "foreground" });
  }),
);
