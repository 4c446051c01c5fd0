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

import { entrySource } from "../cli/bundle.ts";
import { becomeSubreaper, cleanupProcesses, killAndReap } from "./bench/procs.ts";
import { killWorkload, startWorkload, type WorkloadSpec } from "./bench/workloads.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const OUT = `${ROOT}cli/bundle_hot.json`;

/** The workloads whose dumps and restores are recorded: a pre-copied dump, a one-freeze dump, threads. */
const SPECS: WorkloadSpec[] = [
  { name: "anon-64", description: "", program: "c", args: ["anon", "64"], quick: true },
  { name: "anon-8", description: "", program: "c", args: ["anon", "8"], quick: true },
  { name: "threads-8", description: "", program: "c", args: ["threads", "8", "8"], quick: true },
];

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
  const config = [
    "--config",
    `${ROOT}deno.json`,
    "--lock",
    `${ROOT}deno.lock`,
    "--frozen-lockfile",
  ];
  const bundles: Record<string, string> = {};
  for (const command of ["dump", "restore"]) {
    const entry = `${tmp}/${command}.entry.ts`;
    Deno.writeTextFileSync(entry, entrySource(command));
    bundles[command] = `${tmp}/${command}.js`;
    await run([
      Deno.execPath(),
      "bundle",
      "--quiet",
      "--platform",
      "deno",
      ...config,
      "-o",
      bundles[command],
      entry,
    ]);
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
      await killAndReap(JSON.parse(out).rootPid);
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
