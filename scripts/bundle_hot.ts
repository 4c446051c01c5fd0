/**
 * Writes cli/bundle_hot.json: for the dump and restore bundles, the
 * top-level functions that typical commands call, the only ones the
 * bundles make eager (cli/bundle_eager.ts; docs/PERFORMANCE.md, "issue 10,
 * fifth pass, branch startup5"). Builds each bundle without the rewrite
 * (every function lazy), runs dumps and restores of a few bench workloads
 * from it with V8's function events logged, and keeps the names of the
 * bundle's functions that ran. Run it after large changes of the engine:
 * a function missing from the list is only compiled at its first call, as
 * before the rewrite; a stale name costs nothing.
 *
 * Usage: `deno run -A scripts/bundle_hot.ts`
 *
 * @module
 */

import { bundleArgs, configArgs, entrySource } from "../cli/bundle_build.ts";
import { becomeSubreaper, cleanupProcesses, killAndReap } from "./bench/procs.ts";
import { rawSyscall } from "../ffi/libc.ts";
import { SYS } from "../ffi/sysno.ts";
import { killWorkload, startWorkload, type WorkloadSpec } from "./bench/workloads.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const OUT = `${ROOT}cli/bundle_hot.json`;

/**
 * The workloads whose dumps and restores are recorded: the bench's kinds
 * (scripts/bench/workloads.ts), smaller, so that each path its dumps take
 * (a pre-copy or one freeze, threads, a tree with a pipe, many mappings,
 * a sparse reservation, an interpreter with files and libraries) is seen.
 */
const SPECS: WorkloadSpec[] = [
  ["anon-64", "c", ["anon", "64"]],
  ["anon-8", "c", ["anon", "8"]],
  ["threads-64", "c", ["threads", "64"]],
  ["threads4-64", "c", ["threads", "4", "64"]],
  ["tree3x16", "c", ["tree", "3", "16"], 3],
  ["maps-10000", "c", ["maps", "10000"]],
  ["maps-500", "c", ["maps", "500"]],
  ["sparse-1024", "c", ["sparse", "1024", "32"]],
  ["python-16", "python", ["16"]],
].map(([name, program, args, processes]) => ({
  name: name as string,
  description: "",
  program: program as WorkloadSpec["program"],
  args: args as string[],
  quick: true,
  processes: processes as number | undefined,
}));

/** Runs a command; its stdout, or throws with its stderr. */
async function run(args: string[]): Promise<string> {
  const out = await new Deno.Command(args[0], { args: args.slice(1), stdin: "null" }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(`${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
  return text;
}

/**
 * The names of the functions of script `url` that V8's log `log` shows
 * running: a first execution, or the compile of a lazy function at its
 * first call ("parse-function"); the other events ("parse", "preparse-...")
 * also name functions that never ran.
 */
export function functionsRun(log: string, url: string): Set<string> {
  const ids = new Set<string>();
  const names = new Set<string>();
  for (const line of log.split("\n")) {
    const f = line.split(",");
    if (f[0] === "script-details" && f[2] === url) ids.add(f[1]);
    else if (
      f[0] === "function" && ids.has(f[2]) && f[7] &&
      (f[1] === "parse-function" || f[1].startsWith("first-execution"))
    ) {
      names.add(f[7]);
    }
  }
  return names;
}

async function main(): Promise<void> {
  becomeSubreaper();
  const tmp = Deno.makeTempDirSync({ prefix: "cryo-hot-" });
  const config = configArgs();
  const bundles: Record<string, string> = {};
  for (const command of ["dump", "restore"]) {
    const entry = `${tmp}/${command}.entry.ts`;
    Deno.writeTextFileSync(entry, entrySource(command));
    bundles[command] = `${tmp}/${command}.js`;
    await run([Deno.execPath(), ...bundleArgs(config, bundles[command], entry)]);
  }
  const runner = `${tmp}/run.ts`;
  Deno.writeTextFileSync(
    runner,
    "const m = await import(Deno.args[0]);\nDeno.exit(await m.main(Deno.args.slice(1)));\n",
  );
  const hot: Record<string, Set<string>> = { dump: new Set(), restore: new Set() };
  let n = 0;
  /** Runs `command` from its lazy bundle with the log on; adds the names that ran. */
  const record = async (command: string, argv: string[]): Promise<string> => {
    const log = `${tmp}/v8-${n++}.log`;
    const out = await run([
      Deno.execPath(),
      "run",
      "-A",
      `--v8-flags=--log-function-events,--logfile=${log},--no-logfile-per-isolate`,
      runner,
      `file://${bundles[command]}`,
      command,
      ...argv,
    ]);
    const url = `file://${bundles[command]}`;
    for (const name of functionsRun(Deno.readTextFileSync(log), url)) hot[command].add(name);
    return out;
  };
  try {
    for (const spec of SPECS) {
      const w = await startWorkload(spec, tmp);
      const pid = w.child.pid;
      try {
        await record("dump", [
          String(pid),
          "--dir",
          `${tmp}/${spec.name}.nosync`,
          "--leave-running",
          "--no-sync",
        ]);
        await record("dump", [String(pid), "--dir", `${tmp}/${spec.name}`, "--leave-running"]);
      } finally {
        await killWorkload(w);
      }
      const out = await record("restore", [`${tmp}/${spec.name}`, "--detach", "--json"]);
      const { rootPid, pids } = JSON.parse(out) as { rootPid: number; pids: number[] };
      // The restored tree: its other processes first, then the root (ours once cryo exited),
      // then the others again (ours once the root died).
      const others = pids.filter((p) => p !== rootPid);
      for (const p of others) rawSyscall(SYS.kill, p, 9);
      await killAndReap(rootPid);
      for (const p of others) await killAndReap(p);
      console.error(`${spec.name}: dump ${hot.dump.size}, restore ${hot.restore.size} functions`);
    }
  } finally {
    await cleanupProcesses();
    Deno.removeSync(tmp, { recursive: true });
  }
  const sorted = (s: Set<string>) => [...s].sort();
  Deno.writeTextFileSync(
    OUT,
    JSON.stringify({ dump: sorted(hot.dump), restore: sorted(hot.restore) }, null, 2) + "\n",
  );
  console.error(`wrote ${OUT}`);
}

if (import.meta.main) await main();
