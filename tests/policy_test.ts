/**
 * Tests of policies against real processes: validation errors, the
 * example policies, the runner through `cli.ts run` (a computation killed
 * with SIGKILL and restored, `onSignal`, stop on SIGTERM, the exit status
 * after restores run out) and through the library (retention, hooks and
 * their contexts, stop with a final checkpoint then resume), and mod.ts
 * imported by URL running a real checkpoint.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  definePolicy,
  type HookContext,
  parseDuration,
  PolicyError,
  type PolicyEvent,
  type PolicyRun,
  runPolicy,
} from "../mod.ts";
import { isPolicy } from "../engine/policy/schema.ts";
import { rawSyscall } from "../ffi/libc.ts";
import { SYS } from "../ffi/sysno.ts";
import { cliCommand, repoRoot as root, runCli, runDeno } from "./helpers/commands.ts";
import { tempDir, withTempDir } from "./helpers/fs.ts";
import { isAlive } from "./helpers/proc.ts";
import { serveRepository } from "./helpers/serve.ts";
import {
  adoptPid,
  becomeSubreaper,
  buildTarget,
  startTarget,
  withTargets,
} from "./helpers/targets.ts";
import { deadlineIn, sleep, waitUntil } from "./helpers/wait.ts";

const modUrl = new URL("../mod.ts", import.meta.url).href;

/** Waits (up to 20 s) until `cond` holds. */
function until(what: string, cond: () => boolean): Promise<void> {
  return waitUntil(what, cond, 20000);
}

/** Writes `export default definePolicy(<spec>)` into `dir`/name and returns its path. */
async function writePolicy(dir: string, spec: string, name = "policy.ts"): Promise<string> {
  const path = `${dir}/${name}`;
  await Deno.writeTextFile(
    path,
    `import { definePolicy } from ${JSON.stringify(modUrl)};\n` +
      `export default definePolicy(${spec});\n`,
  );
  return path;
}

/** runPolicy(), with the run stopped (errors ignored) when its `await using` scope ends. */
function scopedRun(...args: Parameters<typeof runPolicy>): PolicyRun & AsyncDisposable {
  const run = runPolicy(...args);
  return Object.assign(run, {
    [Symbol.asyncDispose]: async () => {
      await run.stop().catch(() => {});
    },
  });
}

/** Waits until `run` has started its target; registers the target for cleanup, returns its pid. */
async function startedTarget(run: PolicyRun): Promise<number> {
  await until("a started target", () => run.status().pid !== undefined);
  const pid = run.status().pid!;
  adoptPid(pid);
  return pid;
}

/** The names in `<dir>/ck` (the policies' checkpoint directory), sorted. */
function checkpointDirEntries(dir: string): string[] {
  return [...Deno.readDirSync(`${dir}/ck`)].map((e) => e.name).sort();
}

/** `deno run -A cli.ts ...` as a child, its stderr collected line by line. */
class Runner {
  readonly child: Deno.ChildProcess;
  readonly lines: string[] = [];
  stdout = "";
  readonly #reading: Promise<void>[];

  constructor(args: string[]) {
    this.child = cliCommand(args).spawn();
    this.#reading = [
      this.#read(this.child.stderr, (text) => {
        this.lines.push(...text.split("\n").filter(Boolean));
      }),
      this.#read(this.child.stdout, (text) => this.stdout += text),
    ];
  }

  async #read(stream: ReadableStream<Uint8Array>, sink: (text: string) => void): Promise<void> {
    let pending = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      pending += chunk;
      const cut = pending.lastIndexOf("\n");
      if (cut >= 0) {
        sink(pending.slice(0, cut + 1));
        pending = pending.slice(cut + 1);
      }
    }
    if (pending) sink(pending);
  }

  /** Waits for a stderr line matching `re` at index `from` or later; returns the match and index. */
  async waitLine(
    re: RegExp,
    from = 0,
    timeoutMs = 30000,
  ): Promise<{ match: RegExpMatchArray; index: number }> {
    const deadline = deadlineIn(timeoutMs);
    for (;;) {
      for (let i = from; i < this.lines.length; i++) {
        const match = this.lines[i].match(re);
        if (match) return { match, index: i };
      }
      if (Date.now() > deadline) {
        throw new Error(`no line matching ${re}; stderr:\n${this.lines.join("\n")}`);
      }
      await sleep(20);
    }
  }

  /**
   * Waits for the line saying the runner started the target (matching
   * `re`, whose first group is the pid), registers that pid for cleanup
   * and returns it.
   */
  async startedPid(re = /started pid (\d+)/): Promise<number> {
    const pid = Number((await this.waitLine(re)).match[1]);
    adoptPid(pid);
    return pid;
  }

  signal(sig: Deno.Signal): void {
    this.child.kill(sig);
  }

  /** Waits for the runner to exit (SIGKILL after `timeoutMs`). */
  async finish(timeoutMs = 90000): Promise<{ code: number; stderr: string; stdout: string }> {
    const timer = setTimeout(() => this.kill(), timeoutMs);
    const status = await this.child.status;
    clearTimeout(timer);
    await Promise.all(this.#reading);
    return { code: status.code, stderr: this.lines.join("\n"), stdout: this.stdout };
  }

  kill(): void {
    try {
      this.child.kill("SIGKILL");
    } catch { /* already gone */ }
  }

  /** For `await using`: kills the runner if it still runs and waits for it. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.kill();
    await this.finish().catch(() => {});
  }
}

Deno.test("policy: durations", () => {
  assert.equal(parseDuration("30s"), 30000);
  assert.equal(parseDuration("1m30s"), 90000);
  assert.equal(parseDuration("1h 2m"), 3720000);
  assert.equal(parseDuration("500ms"), 500);
  assert.equal(parseDuration("1.5s"), 1500);
  assert.equal(parseDuration(250), 250);
  for (const bad of ["", "soon", "30", "5 parsecs", "1s garbage", "-1s"]) {
    assert.throws(() => parseDuration(bad), /expected a duration/, bad);
  }
  assert.throws(() => parseDuration(-5), /expected a duration/);
});

Deno.test("policy: validation errors name the field and what was expected", async () => {
  const good = { target: { command: ["true"] }, dir: "/tmp/x" };
  const cases: [unknown, RegExp[]][] = [
    [{ ...good, evry: "1s" }, [/evry: unknown field — did you mean "every"\?/]],
    [{ ...good, every: "soon" }, [/every: expected a duration such as "30s".*, got "soon"/]],
    [{ ...good, keep: 0 }, [/keep: expected .*an integer >= 1\), got 0/]],
    [{ dir: "/tmp/x" }, [/target: expected \{ command: \[\.\.\.\] \}, \{ pid \} or \{ pidFile \}/]],
    [{ ...good, target: { cmd: ["x"] } }, [
      /target\.cmd: unknown field/,
      /target: expected one of/,
    ]],
    [{ ...good, target: { command: [] } }, [/target\.command: expected at least the program/]],
    [{ ...good, target: { pid: 1, pidFile: "/x" } }, [/target: expected only one of/]],
    [{ ...good, target: { pid: 12, cwd: "/" } }, [/target\.cwd: only applies to a target/]],
    [{ ...good, onExit: "explode" }, [/onExit: expected "restore", "stop" or a function/]],
    [{ ...good, onSignal: "SIGINT" }, [/onSignal: expected one of "SIGHUP"/]],
    [{ ...good, onSignal: "SIGUSR1" }, [/SIGUSR1 starts Deno's inspector/]],
    [{ ...good, hooks: { afterDmp: () => {} } }, [/hooks\.afterDmp: .*"afterDump"/]],
    [{ ...good, hooks: { beforeDump: 42 } }, [/hooks\.beforeDump: expected a function/]],
    [{ ...good, backoff: { initial: "1s", factor: 0.5 } }, [
      /backoff\.factor: expected a number >= 1/,
    ]],
    [{ ...good, exclude: { mapping: true } }, [/exclude\.mapping: expected a function/]],
    [{ ...good, leaveRunning: "yes" }, [/leaveRunning: expected true or false, got "yes"/]],
    [42, [/expected a policy object/]],
  ];
  for (const [spec, patterns] of cases) {
    let error: unknown;
    try {
      definePolicy(spec as never);
    } catch (e) {
      error = e;
    }
    assert.ok(error instanceof PolicyError, `accepted: ${JSON.stringify(spec)}`);
    for (const re of patterns) assert.match(error.message, re);
  }
  // Several problems are all reported, each with its field.
  try {
    definePolicy({ target: { command: ["x"] }, dir: "", keep: -1, every: 0 } as never);
    assert.fail("accepted");
  } catch (e) {
    assert.ok(e instanceof PolicyError);
    assert.deepEqual(e.issues.map((i) => i.field).sort(), ["dir", "every", "keep"]);
  }
  // Defaults are filled in.
  const p = definePolicy(good);
  assert.ok(isPolicy(p));
  assert.equal(p.keep, 3);
  assert.equal(p.leaveRunning, true);
  assert.equal(p.onExit, "stop");
  assert.equal(p.onStop, "kill");
  assert.equal(definePolicy({ target: { pid: 5 }, dir: "d" }).onStop, "leave");

  // The CLI reports a bad policy in one line naming the field, exit code 1.
  await withTempDir("cryo-policy-", async (dir) => {
    const bad = await writePolicy(
      dir,
      `{ target: { command: ["true"] }, dir: "${dir}/ck", every: "soon", kep: 2 }`,
    );
    await Deno.writeTextFile(`${dir}/nodefault.ts`, "export const policy = 1;\n");
    await Deno.writeTextFile(
      `${dir}/plain.ts`,
      `export default { target: { command: ["true"] }, dir: "${dir}/ck", onStop: "nap" };\n`,
    );
    const [r1, r2, r3] = await Promise.all([
      runCli(["run", bad]),
      runCli(["run", `${dir}/nodefault.ts`]),
      runCli(["run", `${dir}/plain.ts`]),
    ]);
    assert.equal(r1.code, 1, r1.stderr);
    assert.equal(r1.stderr.trim().split("\n").length, 1, r1.stderr);
    assert.match(
      r1.stderr,
      /^cryo: policy .*policy\.ts: invalid policy: every: expected a duration/,
    );
    assert.match(r1.stderr, /kep: unknown field — did you mean "keep"\?/);
    assert.equal(r2.code, 1);
    assert.match(r2.stderr, /has no default export \(expected: export default definePolicy/);
    assert.equal(r3.code, 1);
    assert.match(r3.stderr, /onStop: expected "kill", "leave" or "checkpoint", got "nap"/);
  });
});

Deno.test("policy: the example policies in scripts/ are valid", async () => {
  const examples = [...Deno.readDirSync(`${root}scripts`)]
    .filter((e) => /^policy-.*\.ts$/.test(e.name)).map((e) => e.name).sort();
  assert.ok(examples.length >= 3, `only ${examples}`);
  for (const name of examples) {
    const mod = await import(`../scripts/${name}`);
    assert.ok(isPolicy(mod.default), `${name}: default export is not a policy`);
  }
  const r = await runCli(["run", "--dry-run", `${root}scripts/policy-batch.ts`]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^policy +batch$/m);
  assert.match(r.stdout, /^on exit +restore \(at most 5 restores/m);
});

Deno.test(
  "policy: a computation killed with SIGKILL twice is restored by `cryo run` and prints the uninterrupted result",
  withTargets(async () => {
    becomeSubreaper();
    const bin = await buildTarget("policy_chain");
    const steps = "160000000";
    const reference = await startTarget(bin, [steps]); // runs alongside, uninterrupted
    const dir = await tempDir("cryo-policy-");
    const policy = await writePolicy(
      dir,
      `{
        target: { command: [${JSON.stringify(bin)}, "${steps}"] },
        dir: "${dir}/ck",
        every: "200ms",
        keep: 2,
        onExit: "restore",
        maxRestores: 3,
        backoff: "50ms",
      }`,
    );
    await using runner = new Runner(["run", policy]);
    const pid = await runner.startedPid();
    let from = 0;
    for (let kill = 1; kill <= 2; kill++) {
      from = (await runner.waitLine(/checkpoint \S+ done \(interval\)/, from)).index;
      rawSyscall(SYS.kill, pid, 9);
      const restored = await runner.waitLine(/restored pid (\d+) from/, from);
      assert.equal(Number(restored.match[1]), pid);
      from = restored.index;
    }
    // A checkpoint every 200 ms freezes the computation often: on a loaded machine it may take minutes.
    const r = await runner.finish(240_000);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stderr,
      /target pid \d+ killed by SIGKILL[^]*target pid \d+ killed by SIGKILL/,
    );
    assert.match(r.stderr, /finished: target exited with code 0 \(\d+ checkpoints, 2 restores/);
    await reference.wait(60000);
    const expected = reference.output().match(/result=\w+ steps=\d+/)?.[0];
    assert.ok(expected, reference.output());
    assert.deepEqual(r.stdout.match(/result=\w+ steps=\d+/g), [expected]);
    // keep: 2 held throughout; latest points at the newest.
    const names = checkpointDirEntries(dir);
    assert.equal(names.length, 3, names.join(" "));
    assert.equal(Deno.readLinkSync(`${dir}/ck/latest`), names[1]);
  }),
);

Deno.test(
  "policy: onSignal checkpoints when the runner gets the signal; SIGTERM stops it and kills the target",
  withTargets(async () => {
    becomeSubreaper();
    const bin = await buildTarget("policy_service");
    const dir = await tempDir("cryo-policy-");
    const out = `${dir}/service.out`;
    const policy = await writePolicy(
      dir,
      `{
        name: "svc",
        target: { command: [${JSON.stringify(bin)}], stdout: "${out}" },
        dir: "${dir}/ck",
        onSignal: ["SIGUSR2", "SIGHUP"],
        onStop: "kill",
      }`,
    );
    await using runner = new Runner(["run", policy]);
    const pid = await runner.startedPid(/svc: started pid (\d+)/);
    runner.signal("SIGUSR2");
    const first = await runner.waitLine(/checkpoint (\S+) done \(signal SIGUSR2\)/);
    runner.signal("SIGHUP");
    const second = await runner.waitLine(/checkpoint (\S+) done \(signal SIGHUP\)/, first.index);
    assert.ok(isAlive(pid), "the target runs on after the checkpoints");
    runner.signal("SIGTERM");
    const r = await runner.finish();
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /stopping \(SIGTERM\): ending the target/);
    assert.ok(!isAlive(pid), "the target was ended");
    assert.match(await Deno.readTextFile(out), /terminated at tick \d+\n$/);
    const names = checkpointDirEntries(dir);
    assert.deepEqual(names, [first.match[1], second.match[1], "latest"]);
    assert.equal(Deno.readLinkSync(`${dir}/ck/latest`), second.match[1]);
  }),
);

Deno.test(
  "policy: when restores run out, `cryo run` exits with the target's status",
  withTargets(async () => {
    becomeSubreaper();
    const bin = await buildTarget("policy_service");
    const dir = await tempDir("cryo-policy-");
    // Exits with code 3 at tick 25; restored once from a checkpoint before that, it exits 3 again.
    const policy = await writePolicy(
      dir,
      `{
        target: { command: [${JSON.stringify(bin)}, "25", "3"], stdout: "${dir}/out" },
        dir: "${dir}/ck",
        every: "100ms",
        onExit: "restore",
        maxRestores: 1,
        backoff: "10ms",
      }`,
    );
    await using runner = new Runner(["run", policy]);
    await runner.startedPid();
    const r = await runner.finish();
    assert.equal(r.code, 3, r.stderr);
    assert.match(
      r.stderr,
      /target pid \d+ exited with code 3[^]*restored pid[^]*exited with code 3/,
    );
    assert.match(r.stderr, /giving up: the target exited with code 3 and all 1 restores/);
    assert.match(r.stderr, /exit code 3\)$/);
  }),
);

Deno.test(
  "policy: a { pid } target that is not the runner's child is watched through /proc and restored",
  withTargets(async () => {
    becomeSubreaper();
    const target = await startTarget("policy_service"); // our child, not the runner's
    const dir = await tempDir("cryo-policy-");
    const pidFile = `${dir}/service.pid`;
    await Deno.writeTextFile(pidFile, `${target.pid}\n`);
    const policy = await writePolicy(
      dir,
      `{ target: { pidFile: "${pidFile}" }, dir: "${dir}/ck", onExit: "restore", backoff: "20ms" }`,
    );
    await using runner = new Runner(["run", policy]);
    await target.waitFor(/tick 1\n/);
    await runner.waitLine(new RegExp(`attached to pid ${target.pid}`));
    runner.signal("SIGTERM"); // nothing to checkpoint yet: no restore possible
    const r0 = await runner.finish();
    assert.equal(r0.code, 0, r0.stderr);
    assert.match(r0.stderr, /stopping \(SIGTERM\): leaving the target running/);
    assert.ok(isAlive(target.pid), "onStop defaults to leave for a pid target");

    const policy2 = await writePolicy(
      dir,
      `{ target: { pid: ${target.pid} }, dir: "${dir}/ck", every: "100ms", onExit: "restore", backoff: "20ms" }`,
      "policy2.ts",
    );
    try {
      await using runner2 = new Runner(["run", policy2]);
      await runner2.waitLine(/checkpoint \S+ done/);
      rawSyscall(SYS.kill, target.pid, 9);
      assert.deepEqual(await target.wait(), {
        kind: "signaled",
        pid: target.pid,
        signal: 9,
        core: false,
      });
      const restored = await runner2.waitLine(/restored pid (\d+)/);
      assert.equal(Number(restored.match[1]), target.pid);
      assert.ok(isAlive(target.pid));
      runner2.signal("SIGTERM");
      const r = await runner2.finish();
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, new RegExp(`target pid ${target.pid} (killed by SIGKILL|ended)`));
    } finally {
      adoptPid(target.pid); // the restored target, re-parented to this subreaper
    }
  }),
);

Deno.test(
  "policy: keep 2 retains only the two newest complete checkpoints",
  withTargets(async () => {
    const bin = await buildTarget("policy_service");
    const dir = await tempDir("cryo-policy-");
    const events: PolicyEvent[] = [];
    await using run = scopedRun({
      target: { command: [bin], stdout: `${dir}/out` },
      dir: `${dir}/ck`,
      every: "50ms",
      keep: 2,
    }, { onEvent: (e) => events.push(e) });
    await startedTarget(run);
    await until("5 checkpoints", () => run.status().checkpoints >= 5);
    const outcome = await run.stop();
    assert.equal(outcome.reason, "stopped");
    const done = events.flatMap((e) => e.type === "checkpoint-done" ? [e.checkpoint.name] : []);
    const pruned = events.flatMap((e) => e.type === "pruned" ? e.names : []);
    assert.equal(done.length, outcome.checkpoints);
    assert.deepEqual(done, [...done].sort(), "names sort by time");
    assert.deepEqual(
      pruned,
      done.slice(0, -2),
      "all but the two newest were removed, oldest first",
    );
    const entries = checkpointDirEntries(dir);
    assert.deepEqual(entries, [...done.slice(-2), "latest"]);
    assert.equal(Deno.readLinkSync(`${dir}/ck/latest`), done.at(-1));
    // A checkpoint is removed only after a newer one is complete.
    let complete = 0;
    for (const e of events) {
      if (e.type === "checkpoint-done") complete++;
      if (e.type === "pruned") assert.ok(complete - e.names.length >= 2);
    }
  }),
);

Deno.test(
  "policy: hooks are called in order with the right context",
  withTargets(async () => {
    const bin = await buildTarget("policy_service");
    const dir = await tempDir("cryo-policy-");
    const out = `${dir}/out`;
    const calls: { hook: string; ctx: HookContext }[] = [];
    const listings: string[] = [];
    const events: PolicyEvent[] = [];
    const record = (ctx: HookContext) => calls.push({ hook: ctx.hook, ctx });
    await using run = scopedRun({
      name: "hooked",
      target: { command: [bin], stdout: out },
      dir: `${dir}/ck`,
      keep: 5,
      onExit: "restore",
      backoff: "10ms",
      hooks: {
        beforeDump: (ctx) => {
          record(ctx);
          if (ctx.counts.checkpoints === 2) throw new Error("no third checkpoint");
        },
        afterDump: async (ctx) => {
          record(ctx);
          listings.push((await ctx.run(["ls", ctx.checkpoint!.dir])).stdout);
          ctx.log.info(`saved ${ctx.checkpoint!.name}`);
        },
        beforeRestore: async (ctx) => {
          record(ctx);
          await new Promise((r) => setTimeout(r, 5)); // hooks may be async
        },
        afterRestore: (ctx) => {
          record(ctx);
          ctx.signal("SIGUSR2");
        },
        onError: record,
      },
    }, { onEvent: (e) => events.push(e) });
    const first = await run.checkpoint();
    const pid = run.status().pid!;
    adoptPid(pid);
    const second = await run.checkpoint();
    await assert.rejects(run.checkpoint(), /no third checkpoint/);
    rawSyscall(SYS.kill, pid, 9);
    await until("the restore", () => events.some((e) => e.type === "restored"));
    await until("SIGUSR2 reaching the restored target", () => {
      try {
        return /usr2 at tick/.test(Deno.readTextFileSync(out));
      } catch {
        return false;
      }
    });
    const outcome = await run.stop();
    assert.equal(outcome.reason, "stopped");
    assert.equal(outcome.checkpoints, 2);
    assert.equal(outcome.restores, 1);

    assert.deepEqual(calls.map((c) => c.hook), [
      "beforeDump",
      "afterDump",
      "beforeDump",
      "afterDump",
      "beforeDump",
      "onError",
      "beforeRestore",
      "afterRestore",
    ]);
    for (const { ctx } of calls) {
      assert.equal(ctx.pid, pid);
      assert.equal(ctx.policy, "hooked");
      assert.equal(ctx.dir, `${dir}/ck`);
    }
    const [bd1, ad1, bd2, ad2, bd3, err, br, ar] = calls.map((c) => c.ctx);
    assert.equal(bd1.reason, "api");
    assert.deepEqual(bd1.counts, { checkpoints: 0, restores: 0 });
    assert.equal(ad1.checkpoint?.name, first?.name);
    assert.equal(ad1.checkpoint?.pid, pid);
    assert.deepEqual(ad1.counts, { checkpoints: 1, restores: 0 });
    assert.equal(bd2.latest?.name, first?.name);
    assert.equal(ad2.checkpoint?.name, second?.name);
    assert.equal(bd3.counts.checkpoints, 2);
    assert.equal(err.during, "beforeDump");
    assert.match(String(err.error), /no third checkpoint/);
    assert.deepEqual(br.exit, { signal: 9 });
    assert.equal(br.attempt, 1);
    assert.equal(br.checkpoint?.name, second?.name);
    assert.equal(ar.checkpoint?.name, second?.name);
    assert.deepEqual(ar.counts, { checkpoints: 2, restores: 1 });
    for (const l of listings) assert.match(l, new RegExp(`^${pid}\\.elf\\nmanifest\\.json\\n$`));
    const logs = events.flatMap((e) => e.type === "log" ? [e.message] : []);
    assert.deepEqual(logs, [`saved ${first?.name}`, `saved ${second?.name}`]);
    assert.ok(events.some((e) => e.type === "hook-failed" && e.hook === "beforeDump"));
  }),
);

Deno.test(
  "policy: onStop checkpoint saves and ends the target; resume continues it with the same pid",
  withTargets(async () => {
    const bin = await buildTarget("policy_service");
    const dir = await tempDir("cryo-policy-");
    const out = `${dir}/out`;
    const spec = {
      target: { command: [bin], stdout: out },
      dir: `${dir}/ck`,
      onStop: "checkpoint" as const,
      resume: true,
    };
    await using run1 = scopedRun(spec);
    const pid = await startedTarget(run1);
    await until("tick 5", () => /tick 5\n/.test(Deno.readTextFileSync(out)));
    const o1 = await run1.stop();
    assert.equal(o1.reason, "stopped");
    assert.equal(o1.exitCode, 0);
    assert.equal(o1.last?.reason, "stop");
    assert.ok(!isAlive(pid), "the final checkpoint ended the target");
    const lastTick = Number(Deno.readTextFileSync(out).match(/tick (\d+)\n$/)![1]);

    const events: PolicyEvent[] = [];
    await using resumed = scopedRun(spec, { onEvent: (e) => events.push(e) });
    await until("the resumed target", () => resumed.status().pid !== undefined);
    assert.equal(resumed.status().pid, pid);
    assert.ok(events.some((e) => e.type === "started" && e.how === "resumed"));
    await until(
      `tick ${lastTick + 3}`,
      () => Deno.readTextFileSync(out).includes(`tick ${lastTick + 3}\n`),
    );
    const text = Deno.readTextFileSync(out);
    assert.equal(text.match(/ready pid/g)?.length, 1, "it continued, it did not start again");
    await resumed.stop();
  }),
);

Deno.test(
  "policy: mod.ts imported by URL from a directory without deno.json runs a real checkpoint",
  withTargets(async () => {
    const served = new Set<string>();
    await using server = serveRepository(served);
    const dir = await tempDir("cryo-policy-url-");
    const target = await startTarget("policy_service");
    await target.waitFor(/tick 2\n/);
    await Deno.writeTextFile(
      `${dir}/use_cryo.ts`,
      `import * as cryo from "http://127.0.0.1:${server.addr.port}/mod.ts";
const pid = Number(Deno.args[0]);
let invalid = "";
try {
  cryo.definePolicy({ target: { pid }, dir: "ck", evry: "1s" });
} catch (e) {
  invalid = e instanceof cryo.PolicyError ? e.message : "wrong error";
}
const run = cryo.runPolicy(cryo.definePolicy({ target: { pid }, dir: "ck", keep: 1 }));
const record = await run.checkpoint();
const outcome = await run.stop();
const model = await cryo.readImage(record.dir);
const direct = await cryo.checkpoint(pid, { dir: "direct", leaveRunning: true });
console.log(JSON.stringify({
  invalid,
  name: record.name,
  pagesBytes: record.stats.pagesBytes,
  outcome: outcome.reason,
  exitCode: outcome.exitCode,
  comm: model.processes[0].comm,
  directPid: direct.manifest.rootPid,
}));
`,
    );
    // Deno caches by origin and ports get reused: fetch from this server again.
    const reload = `--reload=http://127.0.0.1:${server.addr.port}`;
    const r = await runDeno(dir, [reload, "use_cryo.ts", String(target.pid)]);
    assert.equal(r.code, 0, r.stderr);
    const got = JSON.parse(r.stdout.trim().split("\n").at(-1)!);
    assert.match(got.invalid, /evry: unknown field — did you mean "every"\?/);
    assert.equal(got.outcome, "stopped");
    assert.equal(got.exitCode, 0);
    assert.match(got.comm, /^policy_service/); // comm: 15 characters of the file name
    assert.equal(got.directPid, target.pid);
    assert.ok(got.pagesBytes > 0);
    assert.ok(Deno.statSync(`${dir}/ck/${got.name}/manifest.json`).isFile);
    assert.equal(Deno.readLinkSync(`${dir}/ck/latest`), got.name);
    // onStop defaults to "leave" for a pid target: it still runs and ticks on.
    const ticks = target.output().match(/tick \d+/g)!.length;
    await target.waitFor(new RegExp(`tick ${ticks + 2}\\n`));
    for (const p of ["/mod.ts", "/engine/policy/runner.ts", "/engine/policy/schema.ts"]) {
      assert.ok(served.has(p), `${p} was not fetched over HTTP`);
    }
  }),
);
