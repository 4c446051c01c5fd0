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
import { waitPid, WNOHANG } from "../ffi/wait.ts";
import {
  adoptPid,
  becomeSubreaper,
  startTarget,
  type Target,
  withTargets,
} from "./helpers/targets.ts";

const root = new URL("../", import.meta.url).pathname;
const cli = `${root}cli.ts`;
const SIGTERM = 15;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function cliCommand(args: string[], piped: boolean): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", cli, ...args],
    cwd: root,
    stdin: "null",
    stdout: piped ? "piped" : "null",
    stderr: "piped",
    env: { NO_COLOR: "1", CRYO_DEBUG: "0" },
  });
}

/** Runs `deno run -A cli.ts ...args` to completion. */
async function cryo(args: string[]): Promise<Run> {
  const out = await cliCommand(args, true).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Asserts a successful run with nothing on stderr. */
function assertOk(r: Run, what: string): void {
  assert.equal(r.code, 0, `${what}: exit ${r.code}, stderr: ${r.stderr}`);
  assert.equal(r.stderr, "", `${what}: stderr`);
}

/** Asserts a failed run: exit `code`, nothing on stdout, one line `cryo: ...` matching `re`. */
function assertOneLine(r: Run, code: number, re: RegExp, what: string): void {
  assert.equal(r.code, code, `${what}: exit ${r.code}, stderr: ${r.stderr}`);
  assert.equal(r.stdout, "", `${what}: stdout`);
  const lines = r.stderr.split("\n").filter(Boolean);
  assert.equal(lines.length, 1, `${what}: not one line:\n${r.stderr}`);
  assert.match(lines[0], /^cryo: /, what);
  assert.match(lines[0], re, `${what}: ${lines[0]}`);
}

/** A cryo CLI running in the background whose stderr is collected as it comes. */
class Background {
  readonly child: Deno.ChildProcess;
  stderr = "";
  readonly #drained: Promise<void>;

  constructor(args: string[]) {
    const child = cliCommand(args, false).spawn();
    this.child = child;
    this.#drained = (async () => {
      const dec = new TextDecoder();
      for await (const chunk of child.stderr) this.stderr += dec.decode(chunk);
    })();
  }

  /** Waits until stderr matches `re`. */
  async waitFor(re: RegExp, timeoutMs = 15000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.stderr.match(re);
      if (m) return m;
      if (Date.now() > deadline) {
        throw new Error(`cryo never printed ${re}; stderr:\n${this.stderr}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Waits for the exit (stderr fully read). */
  async status(): Promise<Deno.CommandStatus> {
    const st = await this.child.status;
    await this.#drained;
    return st;
  }
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

async function waitUntil(cond: () => boolean, what: string, timeoutMs = 10000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Parent pid of `pid` from /proc/<pid>/status. */
function ppidOf(pid: number): number {
  const m = Deno.readTextFileSync(`/proc/${pid}/status`).match(/^PPid:\s+(\d+)$/m);
  return Number(m![1]);
}

/** A ticker target (tests/targets/dump_ticker.c) polling `work` for ping and exit files. */
async function startTicker(work: string): Promise<Target> {
  const t = await startTarget("dump_ticker", [work]);
  await t.waitFor(/^ready pid=\d+$/m);
  return t;
}

/** Asks the ticker with pid `pid` (printing to `t`'s output) for a pong and waits for it. */
async function ping(t: Target, work: string, pid: number): Promise<void> {
  const before = t.output().split("\n").filter((l) => l.startsWith(`pong ${pid} `)).length;
  await Deno.writeTextFile(`${work}/ping`, "");
  await waitUntil(
    () => t.output().split("\n").filter((l) => l.startsWith(`pong ${pid} `)).length > before,
    `pong from ${pid}; output:\n${t.output()}`,
  );
}

/** A temp work dir for a test, removed afterwards. */
async function withWork(fn: (work: string) => Promise<void>): Promise<void> {
  const work = await Deno.makeTempDir({ prefix: "cryo-cli-e2e-" });
  try {
    await fn(work);
  } finally {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}

/** Dumps the ticker with the CLI (killing it) and waits until it is reaped. */
async function dumpAndKill(t: Target, dir: string): Promise<void> {
  const r = await cryo(["dump", String(t.pid), "--dir", dir]);
  assertOk(r, "dump");
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
  withTargets(() =>
    withWork(async (work) => {
      const t = await startTicker(work);

      const r1 = await cryo(["dump", String(t.pid), "--dir", `${work}/one`, "--leave-running"]);
      assertOk(r1, "dump --leave-running");
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
      const r2 = await cryo([
        "dump",
        String(t.pid),
        "--dir",
        `${work}/two`,
        "--leave-running",
        "--json",
      ]);
      assertOk(r2, "dump --json");
      const stats = JSON.parse(r2.stdout);
      assert.deepEqual(Object.keys(stats).sort(), [
        "dir",
        "dumpSeconds",
        "freezeSeconds",
        "imageBytes",
        "leftRunning",
        "mappings",
        "pagesBytes",
        "processes",
        "rootPid",
        "threads",
      ]);
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
      await ping(t, work, t.pid);

      // Without --leave-running the tree is killed after the dump.
      const r3 = await cryo(["dump", String(t.pid), "--dir", `${work}/three`]);
      assertOk(r3, "dump");
      const m3 = r3.stdout.trim().match(SUMMARY);
      assert.ok(m3, r3.stdout);
      assert.equal(m3[8], undefined, "not left running");
      const st = await t.wait(5000);
      assert.deepEqual(st, { kind: "signaled", pid: t.pid, signal: 9, core: false });
      assert.ok(exists(`${work}/three/manifest.json`));
    })
  ),
);

Deno.test(
  "cli show: tree, threads, mappings, fds; --json is readImage(); --plan prints syscalls",
  withTargets(() =>
    withWork(async (work) => {
      const file = `${work}/three-pages`;
      await Deno.writeFile(file, new Uint8Array(3 * 4096).fill(7));
      const t = await startTarget("dump_threads", [file]);
      const ready = await t.waitFor(/^ready pid=\d+ tids=([\d,]+) /m);
      const tids = ready[1].split(",").map(Number);
      const dir = `${work}/image`;
      assertOk(await cryo(["dump", String(t.pid), "--dir", dir, "--leave-running"]), "dump");
      const model = await readImage(dir);
      const p = model.processes[0];

      const [text, json, elfJson, plan] = await Promise.all([
        cryo(["show", dir]),
        cryo(["show", dir, "--json"]),
        cryo(["show", `${dir}/${t.pid}.elf`, "--json"]),
        cryo(["show", dir, "--plan"]),
      ]);

      assertOk(text, "show");
      const out = text.stdout;
      assert.match(out, new RegExp(`^image ${dir}: 1 process\\(es\\), format 1, `, "m"));
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

      assertOk(json, "show --json");
      assert.deepEqual(JSON.parse(json.stdout), JSON.parse(JSON.stringify(model)));
      assertOk(elfJson, "show file.elf --json");
      const single = JSON.parse(elfJson.stdout);
      assert.equal(single.manifest, undefined);
      assert.equal(single.path, `${dir}/${t.pid}.elf`);
      assert.deepEqual(single.processes, JSON.parse(JSON.stringify(model.processes)));

      assertOk(plan, "show --plan");
      assert.match(plan.stdout, new RegExp(`^# process ${t.pid} \\(${p.comm}\\)$`, "m"));
      for (const call of ["mmap", "pread64", "prctl", "open", "mprotect"]) {
        assert.match(plan.stdout, new RegExp(`^ +(#\\d+ )?${call}\\(`, "m"), `${call} line`);
      }

      t.signal(10); // SIGUSR1: the target checks itself and exits
      const st = await t.wait(10000);
      assert.deepEqual(st, { kind: "exited", pid: t.pid, code: 0 }, t.output());
    })
  ),
);

Deno.test(
  "cli restore --detach: prints the root pid; the process runs with that pid",
  withTargets(() =>
    withWork(async (work) => {
      becomeSubreaper(); // before the CLI runs: its orphans come back to this process
      const t = await startTicker(work);
      const pid = t.pid;
      await dumpAndKill(t, `${work}/image`);
      assert.ok(!exists(`/proc/${pid}`), "the pid is free");

      const r = await cryo(["restore", `${work}/image`, "--detach"]);
      assertOk(r, "restore --detach");
      assert.equal(r.stdout, `${pid}\n`);
      const restored = adoptPid(pid, t.outputPath);
      assert.ok(exists(`/proc/${pid}`), "restored process exists");
      assert.equal(ppidOf(pid), Deno.pid, "re-parented to the test (subreaper)");
      assert.match(
        Deno.readTextFileSync(`/proc/${pid}/cmdline`),
        /dump_ticker/,
        "the pid runs the ticker",
      );
      await ping(t, work, pid);

      // Kill it by pid and reap it: no zombie keeps the pid.
      restored.signal(9);
      await waitUntil(() => {
        const st = waitPid(pid, WNOHANG);
        return st.kind === "signaled";
      }, "reaping the restored process");
      assert.ok(!exists(`/proc/${pid}`), "reaped");
    })
  ),
);

Deno.test(
  "cli restore: waits and exits with the restored process's exit status (3)",
  withTargets(() =>
    withWork(async (work) => {
      const t = await startTicker(work);
      const pid = t.pid;
      await dumpAndKill(t, `${work}/image`);
      const bg = new Background(["restore", `${work}/image`]);
      try {
        await bg.waitFor(/waiting for it to exit/);
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
        assert.ok(!exists(`/proc/${pid}`), "reaped by cryo");
      } finally {
        await stopBackground(bg, pid);
      }
    })
  ),
);

Deno.test(
  "cli restore: SIGTERM to cryo is forwarded to the restored process",
  withTargets(() =>
    withWork(async (work) => {
      const t = await startTicker(work);
      const pid = t.pid;
      await dumpAndKill(t, `${work}/image`);
      const bg = new Background(["restore", `${work}/image`]);
      try {
        await bg.waitFor(/waiting for it to exit/);
        await ping(t, work, pid);
        bg.child.kill("SIGTERM");
        const st = await bg.status();
        assert.equal(st.signal, null, "cryo itself was not killed by SIGTERM");
        assert.equal(st.code, 128 + SIGTERM, `exit status of a SIGTERM'd root; ${bg.stderr}`);
        assert.match(t.output(), /^got SIGTERM$/m, "the restored process got it");
        assert.ok(!exists(`/proc/${pid}`), "reaped by cryo");
      } finally {
        await stopBackground(bg, pid);
      }
    })
  ),
);

/** After a failed test: kills a still running background cryo and what it restored. */
async function stopBackground(bg: Background, pid: number): Promise<void> {
  try {
    bg.child.kill("SIGKILL");
  } catch { /* already exited */ }
  await bg.status();
  if (exists(`/proc/${pid}`) && ppidOf(pid) === Deno.pid) adoptPid(pid); // orphan came to us
}

Deno.test(
  "cli export-core: writes a core file readelf calls CORE; an unknown pid is one line",
  withTargets(() =>
    withWork(async (work) => {
      const t = await startTicker(work);
      const dir = `${work}/image`;
      assertOk(await cryo(["dump", String(t.pid), "--dir", dir, "--leave-running"]), "dump");
      const core = `${work}/ticker.core`;
      const [r, bad] = await Promise.all([
        cryo(["export-core", dir, "--pid", String(t.pid), "--out", core]),
        cryo(["export-core", dir, "--pid", "1", "--out", `${work}/none.core`]),
      ]);
      assertOk(r, "export-core");
      assert.match(r.stdout, new RegExp(`^wrote ${core}: \\d+ segments, .* from the image, `));
      const h = await new Deno.Command("readelf", { args: ["-h", core] }).output();
      assert.ok(h.success);
      assert.match(new TextDecoder().decode(h.stdout), /Type:\s+CORE \(Core file\)/);
      assertOneLine(bad, 1, /no process 1 in this image/, "export-core --pid 1");
      assert.ok(!exists(`${work}/none.core`), "no core written for pid 1");
      await ping(t, work, t.pid);
    })
  ),
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
  const runs = await Promise.all(cases.map(([args]) => cryo(args)));
  cases.forEach(([args, re], i) => assertOneLine(runs[i], 2, re, args.join(" ")));
});

Deno.test(
  "cli: a corrupt, truncated or missing image gives one line and exit 1",
  withTargets(() =>
    withWork(async (work) => {
      const t = await startTicker(work);
      const good = `${work}/good`;
      assertOk(await cryo(["dump", String(t.pid), "--dir", good, "--leave-running"]), "dump");
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
        [["show", `${work}/missing`], /No such file or directory.*\/missing'$/],
        [["restore", flipped], /(checksum|SHA-256) .*differs from the manifest/],
        [["restore", truncated], /size \d+ differs from the manifest's \d+$/],
        [["restore", good], new RegExp(`cannot restore: pid ${t.pid} is in use by `)],
        [["export-core", truncated, "--pid", String(t.pid), "--out", `${work}/c1`], /truncated\?$/],
        [["show", truncated, "--plan"], /size \d+ differs from the manifest's \d+$/],
      ];
      const runs = await Promise.all(cases.map(([args]) => cryo(args)));
      cases.forEach(([args, re], i) => assertOneLine(runs[i], 1, re, args.join(" ")));
      assert.ok(!exists(`${work}/c1`), "no core from a corrupt image");
      assert.ok(exists(`/proc/${t.pid}`), "the failed restores did not touch the running target");
      assertOk(await cryo(["show", good]), "the good image still shows");
      await ping(t, work, t.pid);
    })
  ),
);
