/**
 * Kill-anywhere harness: runs `cryo dump` or `cryo restore` as a
 * subprocess, SIGKILLs it at a chosen point and checks what is left.
 *
 * A point is either a phase (`CRYO_TEST_PAUSE_AT`, engine/pause.ts: cryo
 * stops itself there and is killed while stopped) or a time offset, in
 * milliseconds after the target was frozen (dump) or after the restored
 * pid appeared (restore).
 *
 * After a killed dump: either a complete image is in place (it is restored
 * and must run on), or the target runs on untouched (not stopped, not
 * traced, same mappings and signal masks, its own checks of memory,
 * registers and fds pass) and nothing but a partial directory
 * (`.image.cryo-partial-<pid>`) is left, at most one (the next dump
 * removes it). After a killed restore: no restored task is left unless the
 * restore had completed, nothing stopped is left behind, and the image is
 * byte for byte unchanged.
 *
 * Used by tests/kill_anywhere_test.ts and scripts/kill_anywhere.ts.
 *
 * @module
 */

import assert from "node:assert/strict";
import { repoRoot } from "./commands.ts";
import { pathExists, tempDir } from "./fs.ts";
import { isAlive, statusField, tasksOf } from "./proc.ts";
import { adoptPid, startTarget, type Target } from "./targets.ts";
import { deadlineIn, sleep } from "./wait.ts";
import { SIGKILL, SIGUSR1 } from "./signals.ts";
import { waitPid, WNOHANG } from "../../ffi/wait.ts";
import { rawSyscall } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";
import { PARTIAL_RE } from "../../engine/dump/partial.ts";

/**
 * Where to kill cryo: at a phase (`name` or `name:n`), or `ms` after the
 * start mark: for a dump the freeze, or with `fromPages` the moment the
 * first image file appears (the injected syscalls are over); for a restore
 * the moment the restored pid appears.
 */
export type KillPoint = { phase: string } | { afterMs: number; fromPages?: boolean };

/** What a killed run left. */
export interface KillOutcome {
  /** The point, as text. */
  point: string;
  /**
   * `target-intact`: no image, the target runs on; `image`: a complete
   * image (restored and checked); `nothing-left`: a killed restore left
   * nothing; `restored`: the restore had completed (the tree runs);
   * `completed`: cryo finished before the point was reached.
   */
  result: "target-intact" | "image" | "nothing-left" | "restored" | "completed";
}

/** Text of a kill point. */
export function pointName(p: KillPoint): string {
  return "phase" in p ? p.phase : `${p.afterMs}ms${p.fromPages ? " after the pages start" : ""}`;
}

function cli(args: string[], pause?: string, tmpDir?: string): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${repoRoot}cli.ts`, ...args],
    cwd: repoRoot,
    stdin: "null",
    stdout: "null",
    stderr: "null",
    env: {
      NO_COLOR: "1",
      CRYO_DEBUG: "0",
      ...(pause ? { CRYO_TEST_PAUSE_AT: pause } : {}),
      ...(tmpDir ? { TMPDIR: tmpDir } : {}),
    },
  }).spawn();
}

function stateOf(pid: number): string {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/stat`).replace(/^.*\) /s, "")[0];
  } catch {
    return "";
  }
}

/** Waits for `cond`, polling every ms; false if `child` exited first or after `timeoutMs`. */
async function until(
  exited: () => boolean,
  cond: () => boolean,
  timeoutMs = 60_000,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (exited() || Date.now() > deadline) return false;
    await sleep(1);
  }
  return true;
}

/** The cryo processes the harness is running (other lanes' may be stopped on purpose). */
const running = new Set<number>();

/**
 * Runs `cryo <args>` to its end. Its pid stays in {@link running} while it
 * runs, so the other lane's {@link reapOrphans} never reaps it before Deno
 * does (Deno's wait would then fail with ECHILD).
 */
async function runCli(args: string[]): Promise<Deno.CommandOutput> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${repoRoot}cli.ts`, ...args],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  running.add(child.pid);
  try {
    return await child.output();
  } finally {
    running.delete(child.pid);
  }
}

/** Runs `args` and SIGKILLs it at `point`; `mark` is the start of time offsets. */
async function runAndKill(
  args: string[],
  point: KillPoint,
  mark: (cryoPid: number) => boolean,
  tmpDir?: string,
): Promise<{ reached: boolean; code: number }> {
  const child = cli(args, "phase" in point ? point.phase : undefined, tmpDir);
  running.add(child.pid);
  let done = false;
  const status = child.status.then((s) => {
    done = true;
    return s;
  });
  let reached;
  if ("phase" in point) {
    reached = await until(() => done, () => stateOf(child.pid) === "T");
  } else {
    reached = await until(() => done, () => mark(child.pid));
    if (reached && point.afterMs > 0) {
      await sleep(Math.floor(point.afterMs));
      // A fraction of a millisecond (the offsets between whole ones): spun.
      const end = performance.now() + (point.afterMs % 1);
      while (performance.now() < end) { /* spin */ }
    }
    reached &&= !done;
  }
  try {
    child.kill("SIGKILL");
  } catch { /* already exited */ }
  const s = await status;
  running.delete(child.pid);
  return { reached, code: s.code };
}

/** Each thread's signal mask, by tid. */
function sigmasks(pid: number): string {
  return tasksOf(pid).map((tid) => `${tid}:${statusField(pid, "SigBlk", tid)}`).join(" ");
}

/** Asserts every thread of `pid` runs: not stopped, not traced. */
async function assertRunning(pid: number, what: string): Promise<void> {
  const deadline = deadlineIn(2000);
  for (;;) {
    const bad = tasksOf(pid).filter((tid) => {
      const state = statusField(pid, "State", tid)[0];
      return state === "T" || state === "t" || statusField(pid, "TracerPid", tid) !== "0";
    });
    if (bad.length === 0) return;
    assert.ok(Date.now() < deadline, `${what}: threads ${bad.join(", ")} stopped or traced`);
    await sleep(10);
  }
}

/** A cryo CLI run stopped at a phase by CRYO_TEST_PAUSE_AT. */
export interface PausedCli {
  /** The cryo process (stopped). */
  child: Deno.ChildProcess;
  /** Its result, once resumed (SIGCONT) or killed. */
  output: Promise<{ code: number; stderr: string }>;
}

/**
 * Starts `deno run -A cli.ts ...args` (under `wrapper`, e.g. a umask
 * shell) with CRYO_TEST_PAUSE_AT=`phase` and waits until it has stopped
 * there; throws if it exits first.
 */
export async function startPaused(
  args: string[],
  phase: string,
  wrapper: string[] = [],
): Promise<PausedCli> {
  const argv = [...wrapper, Deno.execPath(), "run", "-A", `${repoRoot}cli.ts`, ...args];
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    cwd: repoRoot,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1", CRYO_DEBUG: "0", CRYO_TEST_PAUSE_AT: phase },
  }).spawn();
  let done = false;
  const output = child.output().then((o) => {
    done = true;
    return { code: o.code, stderr: new TextDecoder().decode(o.stderr) };
  });
  // The wrapper execs deno: the child's pid is cryo's.
  if (!await until(() => done, () => stateOf(child.pid) === "T")) {
    throw new Error(`cryo ${args.join(" ")} exited before ${phase}: ${(await output).stderr}`);
  }
  return { child, output };
}

/** Sends SIGUSR1 and waits for the target's next "alive" line (its self-checks passed). */
export async function assertAlive(t: Target, what: string): Promise<void> {
  const count = () => (t.output().match(/^alive /gm) ?? []).length;
  const before = count();
  t.signal(SIGUSR1);
  const deadline = deadlineIn(10_000);
  while (count() <= before) {
    assert.ok(!/FAIL/.test(t.output()), `${what}: the target reports ${t.output()}`);
    assert.ok(isAlive(t.pid), `${what}: the target died: ${t.output()}`);
    assert.ok(Date.now() < deadline, `${what}: the target does not answer: ${t.output()}`);
    await sleep(10);
  }
  assert.ok(!/FAIL/.test(t.output()), `${what}: the target reports ${t.output()}`);
}

/**
 * Whether `pid` is being killed: a thread has SIGKILL pending, or already
 * took it and is exiting (PF_EXITING in its stat flags; an exit can take
 * long on a busy machine, and the SIGKILL is no longer pending then).
 */
function dying(pid: number): boolean {
  try {
    return tasksOf(pid).some((tid) =>
      ["SigPnd", "ShdPnd"].some((f) => (BigInt(`0x${statusField(pid, f, tid)}`) & 0x100n) !== 0n) ||
      (statFlags(pid, tid) & PF_EXITING) !== 0
    );
  } catch {
    return true; // vanishing
  }
}

/** PF_EXITING in a task's flags: it is in do_exit(). */
const PF_EXITING = 0x4;

/** The flags field of /proc/<pid>/task/<tid>/stat. */
function statFlags(pid: number, tid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/task/${tid}/stat`);
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[6]);
}

/** Reaps zombie children of this process that are not known targets (killed cryos' orphans). */
export function reapOrphans(keep: Set<number>): void {
  for (const tid of tasksOf(Deno.pid)) {
    let kids: number[] = [];
    try {
      kids = Deno.readTextFileSync(`/proc/${Deno.pid}/task/${tid}/children`).trim().split(/\s+/)
        .filter(Boolean).map(Number);
    } catch { /* gone */ }
    for (const k of kids) {
      if (keep.has(k)) continue;
      if (stateOf(k) === "Z") {
        try {
          waitPid(k, WNOHANG);
        } catch { /* not ours */ }
      }
    }
  }
}

/** Children of this process in a stopped state, other than `keep`. */
function stoppedChildren(keep: Set<number>): number[] {
  const out: number[] = [];
  for (const tid of tasksOf(Deno.pid)) {
    let kids: number[] = [];
    try {
      kids = Deno.readTextFileSync(`/proc/${Deno.pid}/task/${tid}/children`).trim().split(/\s+/)
        .filter(Boolean).map(Number);
    } catch { /* gone */ }
    out.push(...kids.filter((k) => !keep.has(k) && /^[tT]$/.test(stateOf(k))));
  }
  return out;
}

/** A lane of dump trials: one target, killed dumps into `<parent>/image` one after another. */
export class DumpLane {
  /** The target (the original, or its restored self after an image was completed). */
  target!: Target;
  /** Directory the images are written in. */
  parent = "";
  #work = "";
  #images = 0;
  /** Each thread's own signal mask, as the target set it (read before any dump). */
  #ownMasks = "";

  /** Starts the lane's target. */
  static async start(): Promise<DumpLane> {
    const lane = new DumpLane();
    lane.parent = await tempDir("cryo-kill-dump-");
    lane.#work = await tempDir("cryo-kill-work-");
    lane.target = await startTarget("kill_target", [lane.#work]);
    await lane.target.waitFor(/^ready /m, 30_000);
    await assertAlive(lane.target, "start");
    lane.#ownMasks = sigmasks(lane.target.pid);
    return lane;
  }

  /** Kills `cryo dump` at `point` and checks what is left. */
  async trial(point: KillPoint): Promise<KillOutcome> {
    const t = this.target;
    const name = pointName(point);
    // A thread let go by a killed cryo (or detached by a restore) puts back
    // its own mask when it next runs, which on a loaded machine may be
    // after the main thread answered: the baseline is taken once it has.
    const settle = Date.now() + 10_000;
    while (sigmasks(t.pid) !== this.#ownMasks && Date.now() < settle) await sleep(10);
    assert.equal(sigmasks(t.pid), this.#ownMasks, `${name}: the target's masks did not settle`);
    const maps = Deno.readTextFileSync(`/proc/${t.pid}/maps`);
    const masks = sigmasks(t.pid);
    const dir = `${this.parent}/image`;
    const traced = () => statusField(t.pid, "TracerPid") !== "0";
    const writing = (cryo: number) =>
      pathExists(`${this.parent}/.image.cryo-partial-${cryo}/${t.pid}.elf.partial`);
    const mark = "afterMs" in point && point.fromPages ? writing : traced;
    const { reached } = await runAndKill(["dump", String(t.pid), "--dir", dir], point, mark);
    const left = [...Deno.readDirSync(this.parent)].map((e) => e.name);
    const partials = left.filter((n) => PARTIAL_RE.test(n));
    const others = left.filter((n) => !PARTIAL_RE.test(n) && n !== "image");
    assert.deepEqual(others, [], `${name}: unexpected files left`);
    assert.ok(partials.length <= 1, `${name}: older partial directories were not removed`);
    if (!left.includes("image")) {
      await assertRunning(t.pid, name);
      await assertAlive(t, name);
      // A thread let go inside an injected syscall puts back its own state
      // (rt_sigreturn), undoing a change first, as soon as it runs: it has
      // by now (the target answered), or very soon.
      const deadline = deadlineIn(5000);
      const same = () =>
        Deno.readTextFileSync(`/proc/${t.pid}/maps`) === maps && sigmasks(t.pid) === masks;
      while (!same() && Date.now() < deadline) await sleep(10);
      const now = Deno.readTextFileSync(`/proc/${t.pid}/maps`);
      const lines = (text: string) => new Set(text.split("\n"));
      const [was, is] = [lines(maps), lines(now)];
      const diff = [
        ...[...was].filter((l) => !is.has(l)).map((l) => `- ${l}`),
        ...[...is].filter((l) => !was.has(l)).map((l) => `+ ${l}`),
      ];
      assert.equal(now, maps, `${name}: mappings changed: ${diff.join(" | ")}`);
      assert.equal(sigmasks(t.pid), masks, `${name}: signal masks changed`);
      return { point: name, result: "target-intact" };
    }
    // A complete image: the original may still run (killed between the
    // rename and the kill); it goes, the image comes back.
    assert.ok(
      [...Deno.readDirSync(dir)].some((e) => e.name === "manifest.json"),
      `${name}: image without manifest`,
    );
    const pid = t.pid;
    await t.kill();
    reapOrphans(running); // the other lane's cryo is Deno's to reap
    const r = await runCli(["restore", dir, "--detach"]);
    assert.ok(r.success, `${name}: restore failed: ${new TextDecoder().decode(r.stderr)}`);
    t.resetAfterRestore();
    await assertRunning(pid, `${name} (restored)`);
    await assertAlive(t, `${name} (restored)`);
    await Deno.rename(dir, `${this.parent}/done-${++this.#images}`);
    await Deno.remove(`${this.parent}/done-${this.#images}`, { recursive: true });
    return { point: name, result: reached ? "image" : "completed" };
  }
}

/** SHA-256 of every file of `dir`, by name. */
async function digest(dir: string): Promise<string> {
  const out: string[] = [];
  for (const e of [...Deno.readDirSync(dir)].sort((a, b) => a.name.localeCompare(b.name))) {
    const bytes = await Deno.readFile(`${dir}/${e.name}`);
    const h = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
    out.push(`${e.name}:${Array.from(h, (b) => b.toString(16).padStart(2, "0")).join("")}`);
  }
  return out.join("\n");
}

/** A lane of restore trials: one image, restored and killed again and again. */
export class RestoreLane {
  /** The image directory. */
  dir = "";
  /** The dumped (and restored) pid. */
  pid = 0;
  #target!: Target;
  #digest = "";

  /** Dumps a fresh target (through the CLI) to make the lane's image. */
  static async start(): Promise<RestoreLane> {
    const lane = new RestoreLane();
    const parent = await tempDir("cryo-kill-restore-");
    const work = await tempDir("cryo-kill-work-");
    const t = await startTarget("kill_target", [work]);
    await t.waitFor(/^ready /m, 30_000);
    await assertAlive(t, "start");
    lane.dir = `${parent}/image`;
    const r = await runCli(["dump", String(t.pid), "--dir", lane.dir]);
    assert.ok(r.success, new TextDecoder().decode(r.stderr));
    await t.wait();
    lane.pid = t.pid;
    lane.#target = t;
    lane.#digest = await digest(lane.dir);
    return lane;
  }

  /** Kills `cryo restore` at `point` and checks what is left. */
  async trial(point: KillPoint): Promise<KillOutcome> {
    const name = pointName(point);
    const exists = () => isAlive(this.pid);
    // The killed cryo's temporary files (the launcher) go to a directory of the trial's own.
    const tmp = Deno.makeTempDirSync({ prefix: "cryo-kill-tmp-" });
    const { reached } = await runAndKill(["restore", this.dir, "--detach"], point, exists, tmp);
    const tmpLeft = [...Deno.readDirSync(tmp)].map((e) => e.name);
    Deno.removeSync(tmp, { recursive: true });
    assert.deepEqual(tmpLeft, [], `${name}: temporary files left`);
    // EXITKILL kills the traced tasks as cryo dies: give them a moment. One
    // still there after that is a released (complete) restore, or a bug.
    // A task with SIGKILL pending is dying, however long that takes on a busy machine.
    const settled = Date.now() + 300;
    const deadline = deadlineIn(10_000);
    while (isAlive(this.pid) && (dying(this.pid) || Date.now() < settled)) {
      assert.ok(Date.now() < deadline, `${name}: process ${this.pid} does not die`);
      await sleep(5);
    }
    const restored = isAlive(this.pid);
    reapOrphans(running); // the other lane's cryo is Deno's to reap
    const stopped = stoppedChildren(running);
    const cmd = (p: number) => {
      try {
        return Deno.readTextFileSync(`/proc/${p}/cmdline`).replaceAll("\0", " ");
      } catch {
        return "?";
      }
    };
    assert.deepEqual(stopped.map(cmd), [], `${name}: stopped processes left`);
    assert.equal(await digest(this.dir), this.#digest, `${name}: the image changed`);
    if (!restored) {
      // Gone for good before the next trial restores the same pid: its
      // leader shows as a zombie while its other thread still exits, and
      // the group is reaped (by this process, the subreaper) only after that.
      const gone = deadlineIn(10_000);
      while (pathExists(`/proc/${this.pid}`)) {
        assert.ok(Date.now() < gone, `${name}: process ${this.pid} is not reaped`);
        reapOrphans(running);
        await sleep(5);
      }
      return { point: name, result: "nothing-left" };
    }
    // The restore had completed: the tree runs and checks itself.
    const t = adoptPid(this.pid, this.#target.outputPath);
    await assertRunning(this.pid, `${name} (restored)`);
    await assertAlive(t, `${name} (restored)`);
    rawSyscall(SYS.kill, this.pid, SIGKILL);
    await t.wait(5000);
    return { point: name, result: reached ? "restored" : "completed" };
  }

  /** Restores the image to completion and checks the process. */
  async finish(): Promise<void> {
    const r = await runCli(["restore", this.dir, "--detach"]);
    assert.ok(r.success, `final restore failed: ${new TextDecoder().decode(r.stderr)}`);
    const t = adoptPid(this.pid, this.#target.outputPath);
    await assertRunning(this.pid, "final restore");
    await assertAlive(t, "final restore");
    await t.kill();
  }
}
