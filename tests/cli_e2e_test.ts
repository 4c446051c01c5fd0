/**
 * End-to-end tests of the command line on real processes: `cli.ts` runs
 * as a subprocess of the test (so the test is its parent, and a child
 * subreaper that gets back what a detached restore leaves behind).
 *
 * - `dump` prints its one-line summary, `--json` its statistics, and kills
 *   the target unless `--leave-running`;
 * - `show` prints the tree, threads, mappings and fds; `show --json` is the
 *   readImage() model (of a directory or one .elf); `show --plan` prints
 *   the restore program as syscalls;
 * - `restore --detach` prints the root pid, and the process runs with it;
 * - `restore` waits and exits with the restored process's exit status, and
 *   forwards SIGTERM to it;
 * - `export-core` writes a core file readelf calls CORE;
 * - usage errors exit 2, a corrupt or missing image gives one line and 1.
 *
 * @module
 */

import assert from "node:assert/strict";
import { readImage } from "../engine/inspect.ts";
import { IMAGE_FORMAT_VERSION } from "../engine/model.ts";
import { waitPid, WNOHANG } from "../ffi/wait.ts";
import {
  assertCliOk,
  assertOneLineError,
  cliCommand,
  readelf,
  runCli,
} from "./helpers/commands.ts";
import { pathExists, tempDir } from "./helpers/fs.ts";
import { ppidOf } from "./helpers/proc.ts";
import { SIGTERM } from "./helpers/signals.ts";
import {
  adoptPid,
  becomeSubreaper,
  startTarget,
  type Target,
  withTargets,
} from "./helpers/targets.ts";
import { deadlineIn, sleep, waitUntil } from "./helpers/wait.ts";

/** A cryo CLI running in the background whose stderr is collected as it comes. */
class Background {
  readonly child: Deno.ChildProcess;
  stderr = "";
  readonly #drained: Promise<void>;

  constructor(args: string[]) {
    const child = cliCommand(args, "null").spawn();
    this.child = child;
    this.#drained = (async () => {
      const dec = new TextDecoder();
      for await (const chunk of child.stderr) this.stderr += dec.decode(chunk);
    })();
  }

  /** Waits until stderr matches `re`. */
  async waitFor(re: RegExp, timeoutMs = 15000): Promise<RegExpMatchArray> {
    const deadline = deadlineIn(timeoutMs);
    for (;;) {
      const m = this.stderr.match(re);
      if (m) return m;
      if (Date.now() > deadline) {
        throw new Error(`cryo never printed ${re}; stderr:\n${this.stderr}`);
      }
      await sleep(20);
    }
  }

  /** Waits for the exit (stderr fully read). */
  async status(): Promise<Deno.CommandStatus> {
    const st = await this.child.status;
    await this.#drained;
    return st;
  }
}

/** A ticker target (tests/targets/dump_ticker.c) polling `work` for ping and exit files. */
async function startTicker(work: string): Promise<Target> {
  const t = await startTarget("dump_ticker", [work]);
  await t.waitFor(/^ready pid=\d+$/m);
  return t;
}

/** Asks the ticker with pid `pid` (printing to `t`'s output) for a pong and waits for it. */
async function ping(t: Target, work: string, pid: number): Promise<void> {
  const pongs = () => t.output().split("\n").filter((l) => l.startsWith(`pong ${pid} `)).length;
  const before = pongs();
  await Deno.writeTextFile(`${work}/ping`, "");
  await waitUntil(`pong from ${pid}; output:\n${t.output()}`, () => pongs() > before);
}

/**
 * Starts a ticker in a fresh work dir and dumps it with the CLI into
 * `<work>/<image>`, leaving it running.
 */
async function dumpedTicker(image: string): Promise<{ work: string; t: Target; dir: string }> {
  const work = await tempDir("cryo-cli-e2e-");
  const t = await startTicker(work);
  const dir = `${work}/${image}`;
  assertCliOk(await runCli(["dump", String(t.pid), "--dir", dir, "--leave-running"]), "dump");
  return { work, t, dir };
}

/** Dumps the ticker with the CLI (killing it) and waits until it is reaped. */
async function dumpAndKill(t: Target, dir: string): Promise<void> {
  const r = await runCli(["dump", String(t.pid), "--dir", dir]);
  assertCliOk(r, "dump");
  const st = await t.wait(5000);
  assert.deepEqual(st, { kind: "signaled", pid: t.pid, signal: 9, core: false }, "killed by dump");
  t.resetAfterRestore(); // the same pid comes back as the restored process
}

const SUMMARY = new RegExp(
  String.raw`^dumped 1 process, 1 thread, (\d+) mappings: [\d.]+ (B|KiB|MiB) of pages ` +
    String.raw`\(image [\d.]+ (B|KiB|MiB)\) in [\d.]+ (µs|ms|s), [\d.]+ (B|KiB|MiB|GiB)/s, ` +
    String.raw`frozen [\d.]+ (µs|ms|s) -> (\S+)( \(left running\))?$`,
);

Deno.test(
  "cli dump: one-line summary, --json statistics, --leave-running keeps the target, default kills it",
  withTargets(async () => {
    const work = await tempDir("cryo-cli-e2e-");
    const t = await startTicker(work);

    const r1 = await runCli(["dump", String(t.pid), "--dir", `${work}/one`, "--leave-running"]);
    assertCliOk(r1, "dump --leave-running");
    const lines = r1.stdout.split("\n").filter(Boolean);
    assert.equal(lines.length, 1, r1.stdout);
    const m = lines[0].match(SUMMARY);
    assert.ok(m, `summary: ${lines[0]}`);
    assert.equal(m[7], `${work}/one`);
    assert.equal(m[8], " (left running)");
    const model = await readImage(`${work}/one`);
    assert.equal(Number(m[1]), model.processes[0].mappings.length);
    await ping(t, work, t.pid);

    // An empty existing directory is fine too.
    await Deno.mkdir(`${work}/two`);
    const r2 = await runCli([
      "dump",
      String(t.pid),
      "--dir",
      `${work}/two`,
      "--leave-running",
      "--json",
      "--no-sync", // a throw-away image is as complete, only not fsync'd
      "--precopy", // even for this small target (by default only when it pays)
    ]);
    assertCliOk(r2, "dump --json --no-sync");
    const stats = JSON.parse(r2.stdout);
    assert.deepEqual(Object.keys(stats).sort(), [
      "dir",
      "dumpSeconds",
      "freezeSeconds",
      "imageBytes",
      "leftRunning",
      "mappings",
      "pagesBytes",
      "precopy", // --leave-running copies the pages while the tree runs first
      "processes",
      "rootPid",
      "threads",
    ]);
    assert.ok(stats.precopy.bytes >= stats.precopy.reusedBytes && stats.precopy.frozenSeconds > 0);
    assert.equal(stats.dir, `${work}/two`);
    assert.equal(stats.rootPid, t.pid);
    assert.equal(stats.leftRunning, true);
    assert.equal(stats.processes, 1);
    assert.equal(stats.threads, 1);
    const manifest = JSON.parse(await Deno.readTextFile(`${work}/two/manifest.json`));
    const { dir: _d, rootPid: _r, leftRunning: _l, ...rest } = stats;
    assert.deepEqual(rest, manifest.stats);
    assert.equal(stats.imageBytes, (await Deno.stat(`${work}/two/${t.pid}.elf`)).size);
    assert.ok(stats.pagesBytes > 0 && stats.pagesBytes % 4096 === 0);
    assert.ok(stats.freezeSeconds > 0 && stats.freezeSeconds <= stats.dumpSeconds);
    assert.equal((await readImage(`${work}/two`)).processes[0].pid, t.pid);
    await ping(t, work, t.pid);

    // Without --leave-running the tree is killed after the dump.
    const r3 = await runCli(["dump", String(t.pid), "--dir", `${work}/three`]);
    assertCliOk(r3, "dump");
    const m3 = r3.stdout.trim().match(SUMMARY);
    assert.ok(m3, r3.stdout);
    assert.equal(m3[8], undefined, "not left running");
    const st = await t.wait(5000);
    assert.deepEqual(st, { kind: "signaled", pid: t.pid, signal: 9, core: false });
    assert.ok(pathExists(`${work}/three/manifest.json`));
  }),
);

Deno.test(
  "cli show: tree, threads, mappings, fds; --json is readImage(); --plan prints syscalls",
  withTargets(async () => {
    const work = await tempDir("cryo-cli-e2e-");
    const file = `${work}/three-pages`;
    await Deno.writeFile(file, new Uint8Array(3 * 4096).fill(7));
    const t = await startTarget("dump_threads", [file]);
    const ready = await t.waitFor(/^ready pid=\d+ tids=([\d,]+) /m);
    const tids = ready[1].split(",").map(Number);
    const dir = `${work}/image`;
    assertCliOk(await runCli(["dump", String(t.pid), "--dir", dir, "--leave-running"]), "dump");
    const model = await readImage(dir);
    const p = model.processes[0];

    const [text, json, elfJson, plan] = await Promise.all([
      runCli(["show", dir]),
      runCli(["show", dir, "--json"]),
      runCli(["show", `${dir}/${t.pid}.elf`, "--json"]),
      runCli(["show", dir, "--plan"]),
    ]);

    assertCliOk(text, "show");
    const out = text.stdout;
    assert.match(
      out,
      new RegExp(`^image ${dir}: 1 process\\(es\\), format ${IMAGE_FORMAT_VERSION}, `, "m"),
    );
    assert.match(out, new RegExp(`^${t.pid} ${p.comm} \\(6 threads\\)$`, "m"), "tree");
    assert.match(out, new RegExp(`^process ${t.pid} \\(${p.comm}\\)  parent ${Deno.pid} `, "m"));
    for (const th of p.threads) {
      assert.ok(tids.includes(th.tid));
      assert.match(out, new RegExp(`│ ${th.tid} +│ ${th.comm} +│ ${th.regs.rip} +│`), th.comm);
    }
    for (const name of ["w-read", "w-futex", "w-poll", "w-sleep", "w-spin"]) {
      assert.match(out, new RegExp(`│ \\d+ +│ ${name} +│`), `thread ${name} listed`);
    }
    for (const m of p.mappings) {
      assert.match(
        out,
        new RegExp(`│ ${m.start}-${m.end} +│ ${m.perms} +│ ${m.kind} +│`),
        `mapping ${m.start}`,
      );
    }
    assert.match(out, /│ fd +│ kind +│ target +│ flags +│ pos +│ on restore +│/);
    for (const f of p.fds) {
      assert.match(out, new RegExp(`│ ${f.fd} +│ ${f.kind} +│`), `fd ${f.fd}`);
    }
    assert.ok(p.fds.filter((f) => f.kind === "pipe").length >= 4, "the target's pipes");
    assert.match(out, /^ {2}signal handlers: .*SIGUSR1=0x[0-9a-f]+/m);

    assertCliOk(json, "show --json");
    assert.deepEqual(JSON.parse(json.stdout), JSON.parse(JSON.stringify(model)));
    assertCliOk(elfJson, "show file.elf --json");
    const single = JSON.parse(elfJson.stdout);
    assert.equal(single.manifest, undefined);
    assert.equal(single.path, `${dir}/${t.pid}.elf`);
    assert.deepEqual(single.processes, JSON.parse(JSON.stringify(model.processes)));

    assertCliOk(plan, "show --plan");
    assert.match(plan.stdout, new RegExp(`^# process ${t.pid} \\(${p.comm}\\)$`, "m"));
    for (const call of ["mmap", "pread64", "prctl", "open", "mprotect"]) {
      assert.match(plan.stdout, new RegExp(`^ +(#\\d+ )?${call}\\(`, "m"), `${call} line`);
    }

    t.signal(10); // SIGUSR1: the target checks itself and exits
    const st = await t.wait(10000);
    assert.deepEqual(st, { kind: "exited", pid: t.pid, code: 0 }, t.output());
  }),
);

Deno.test(
  "cli restore --detach: prints the root pid; the process runs with that pid",
  withTargets(async () => {
    const work = await tempDir("cryo-cli-e2e-");
    becomeSubreaper(); // before the CLI runs: its orphans come back to this process
    const t = await startTicker(work);
    const pid = t.pid;
    await dumpAndKill(t, `${work}/image`);
    assert.ok(!pathExists(`/proc/${pid}`), "the pid is free");

    const r = await runCli(["restore", `${work}/image`, "--detach"]);
    assertCliOk(r, "restore --detach");
    assert.equal(r.stdout, `${pid}\n`);
    const restored = adoptPid(pid, t.outputPath);
    assert.ok(pathExists(`/proc/${pid}`), "restored process exists");
    assert.equal(ppidOf(pid), Deno.pid, "re-parented to the test (subreaper)");
    assert.match(
      Deno.readTextFileSync(`/proc/${pid}/cmdline`),
      /dump_ticker/,
      "the pid runs the ticker",
    );
    await ping(t, work, pid);

    // Kill it by pid and reap it: no zombie keeps the pid.
    restored.signal(9);
    await waitUntil("reaping the restored process", () => {
      const st = waitPid(pid, WNOHANG);
      return st.kind === "signaled";
    });
    assert.ok(!pathExists(`/proc/${pid}`), "reaped");
  }),
);

/**
 * Dumps a ticker with the CLI (killing it), restores it with `cryo restore`
 * running in the background and, once cryo waits for the restored process,
 * runs `fn` with the ticker (now the restored process), cryo and the work
 * dir. Afterwards kills whatever is left.
 */
async function withBackgroundRestore(
  fn: (t: Target, bg: Background, work: string) => Promise<void>,
): Promise<void> {
  const work = await tempDir("cryo-cli-e2e-");
  const t = await startTicker(work);
  await dumpAndKill(t, `${work}/image`);
  const bg = new Background(["restore", `${work}/image`]);
  try {
    await bg.waitFor(/waiting for it to exit/);
    await fn(t, bg, work);
  } finally {
    await stopBackground(bg, t.pid);
  }
}

/** After a failed test: kills a still running background cryo and what it restored. */
async function stopBackground(bg: Background, pid: number): Promise<void> {
  try {
    bg.child.kill("SIGKILL");
  } catch { /* already exited */ }
  await bg.status();
  if (pathExists(`/proc/${pid}`) && ppidOf(pid) === Deno.pid) adoptPid(pid); // orphan came to us
}

Deno.test(
  "cli restore: waits and exits with the restored process's exit status (3)",
  withTargets(() =>
    withBackgroundRestore(async (t, bg, work) => {
      const pid = t.pid;
      assert.equal(
        bg.stderr.trim(),
        `cryo: restored 1 process (root pid ${pid}) in ${
          bg.stderr.match(/in (.*); waiting/)?.[1]
        }; waiting for it to exit`,
      );
      assert.equal(ppidOf(pid), bg.child.pid, "cryo is the restored process's parent");
      await ping(t, work, pid);
      await Deno.writeTextFile(`${work}/exit`, "3");
      const st = await bg.status();
      assert.equal(st.code, 3, bg.stderr);
      assert.equal(st.signal, null);
      assert.match(t.output(), /^exiting 3$/m);
      assert.ok(!pathExists(`/proc/${pid}`), "reaped by cryo");
    })
  ),
);

Deno.test(
  "cli restore: SIGTERM to cryo is forwarded to the restored process",
  withTargets(() =>
    withBackgroundRestore(async (t, bg, work) => {
      await ping(t, work, t.pid);
      bg.child.kill("SIGTERM");
      const st = await bg.status();
      assert.equal(st.signal, null, "cryo itself was not killed by SIGTERM");
      assert.equal(st.code, 128 + SIGTERM, `exit status of a SIGTERM'd root; ${bg.stderr}`);
      assert.match(t.output(), /^got SIGTERM$/m, "the restored process got it");
      assert.ok(!pathExists(`/proc/${t.pid}`), "reaped by cryo");
    })
  ),
);

Deno.test(
  "cli export-core: writes a core file readelf calls CORE; an unknown pid is one line",
  withTargets(async () => {
    const { work, t, dir } = await dumpedTicker("image");
    const core = `${work}/ticker.core`;
    const [r, bad] = await Promise.all([
      runCli(["export-core", dir, "--pid", String(t.pid), "--out", core]),
      runCli(["export-core", dir, "--pid", "1", "--out", `${work}/none.core`]),
    ]);
    assertCliOk(r, "export-core");
    assert.match(r.stdout, new RegExp(`^wrote ${core}: \\d+ segments, .* from the image, `));
    assert.match(await readelf(["-h"], core), /Type:\s+CORE \(Core file\)/);
    assertOneLineError(bad, 1, /no process 1 in this image/, "export-core --pid 1");
    assert.ok(!pathExists(`${work}/none.core`), "no core written for pid 1");
    await ping(t, work, t.pid);
  }),
);

Deno.test("cli usage errors of show, restore and export-core: one line, exit 2", async () => {
  const cases: [string[], RegExp][] = [
    [["show"], /missing required argument 'image'/],
    [["restore"], /missing required argument 'dir'/],
    [["restore", "/tmp", "--inherit-fd", "bogus"], /--inherit-fd bogus: expected <fd>=<path>/],
    [["restore", "/tmp", "--inherit-fd", "3=fd:7"], /only cryo's fds 0, 1 and 2/],
    [["export-core", "/tmp", "--out", "/tmp/x"], /required option '--pid <pid>' not specified/],
    [["export-core", "/tmp", "--pid", "x", "--out", "/tmp/x"], /pid must be a positive integer/],
    [["dump", "0", "--dir", "/tmp/x"], /pid must be a positive integer, got '0'/],
    [["show", "/tmp", "--bogus"], /unknown option '--bogus'/],
  ];
  const runs = await Promise.all(cases.map(([args]) => runCli(args)));
  cases.forEach(([args, re], i) => assertOneLineError(runs[i], 2, re, args.join(" ")));
});

Deno.test(
  "cli: a corrupt, truncated or missing image gives one line and exit 1",
  withTargets(async () => {
    const { work, t, dir: good } = await dumpedTicker("good");
    const elfName = `${t.pid}.elf`;
    const copy = async (name: string) => {
      await Deno.mkdir(`${work}/${name}`);
      for (const f of ["manifest.json", elfName]) {
        await Deno.copyFile(`${good}/${f}`, `${work}/${name}/${f}`);
      }
      return `${work}/${name}`;
    };
    const truncated = await copy("truncated");
    const bytes = await Deno.readFile(`${truncated}/${elfName}`);
    await Deno.writeFile(`${truncated}/${elfName}`, bytes.subarray(0, bytes.length >> 1));
    const flipped = await copy("flipped");
    const f = await Deno.readFile(`${flipped}/${elfName}`);
    f[f.length - 100] ^= 0xff;
    await Deno.writeFile(`${flipped}/${elfName}`, f);
    const badManifest = await copy("manifest");
    await Deno.writeTextFile(`${badManifest}/manifest.json`, "{not json");
    const notElf = `${work}/not.elf`;
    await Deno.writeTextFile(notElf, "this is not an ELF file. ".repeat(8));

    const cases: [string[], RegExp][] = [
      [["show", truncated], /size \d+ differs from the manifest's \d+$/],
      [["show", `${truncated}/${elfName}`, "--json"], /truncated/],
      [["show", notElf], /not\.elf: not an ELF file \(bad magic\)$/],
      [["show", badManifest], /manifest\.json: not valid JSON/],
      [["show", `${work}/missing`], /\/missing: no such image$/],
      [["restore", `${work}/missing`], /cannot restore: there is no image directory .*\/missing$/],
      [["restore", notElf], /cannot restore: .*not\.elf is not a directory \(an image is/],
      [
        ["image", "flatten", `${work}/missing`, "--out", `${work}/f1`],
        /missing: no such image directory$/,
      ],
      [["export-core", notElf, "--pid", "1", "--out", `${work}/c2`], /not\.elf: not a directory/],
      [["restore", flipped], /(checksum|SHA-256) .*differs from the manifest/],
      [["restore", truncated], /size \d+ differs from the manifest's \d+$/],
      [["restore", good], new RegExp(`cannot restore: pid ${t.pid} is in use by `)],
      [["export-core", truncated, "--pid", String(t.pid), "--out", `${work}/c1`], /truncated\?$/],
      [["show", truncated, "--plan"], /size \d+ differs from the manifest's \d+$/],
    ];
    const runs = await Promise.all(cases.map(([args]) => runCli(args)));
    cases.forEach(([args, re], i) => assertOneLineError(runs[i], 1, re, args.join(" ")));
    assert.ok(!pathExists(`${work}/c1`), "no core from a corrupt image");
    assert.ok(
      !pathExists(`${work}/c2`) && !pathExists(`${work}/f1`),
      "nothing from a missing image",
    );
    assert.ok(pathExists(`/proc/${t.pid}`), "the failed restores did not touch the running target");
    assertCliOk(await runCli(["show", good]), "the good image still shows");
    await ping(t, work, t.pid);
  }),
);
