/**
 * `deno run -A scripts/bench/restore_syscalls.ts [--workload threads-64] [--rounds 1]
 * [--criu <path>] [--perf <path>]`: the system calls of one restore by cryo and one by CRIU of the same
 * workload, counted by `perf trace -s` (tracepoints, not ptrace: cryo and CRIU can still
 * ptrace the restored tasks). The workload is dumped once by each tool (`dump
 * --leave-running`), then each round kills it and restores it with each tool (`cryo restore
 * --detach`, `criu restore -d --shell-job`). Prints, per tool and round, the calls of the
 * tool's own threads and of the restored process's (and of its launcher), the most frequent
 * syscalls of each, and the tool's `ptrace` requests by number (`perf trace -e ptrace`, a
 * second run). perf's own cost inflates every call: compare counts, not times.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { cryoDump, prepareCli } from "./measure.ts";
import { adopt, becomeSubreaper, spawnChild, waitChild } from "./procs.ts";
import { killWorkload, startWorkload, workloads } from "./workloads.ts";

const { values: opts } = parseArgs({
  args: Deno.args,
  options: {
    workload: { type: "string", default: "threads-64" },
    rounds: { type: "string", default: "1" },
    criu: { type: "string", default: Deno.env.get("CRIU") ?? "/opt/criu/criu/criu/criu" },
    perf: { type: "string", default: "/usr/bin/perf" },
  },
});

/** Calls per syscall of the tool's threads ("own") and of the restored tasks, from a `perf trace -s` file. */
function summary(path: string, toolComm: RegExp) {
  const calls = { tool: new Map<string, number>(), restored: new Map<string, number>() };
  let side: "tool" | "restored" | undefined;
  for (const line of Deno.readTextFileSync(path).split("\n")) {
    const head = line.match(/^ (\S.*?) \((\d+)\), \d+ events/);
    if (head) {
      side = toolComm.test(head[1]) ? "tool" : "restored";
      continue;
    }
    const row = line.match(/^\s+(\w+)\s+(\d+)\s+\d+\s+[\d.]+/);
    if (row && side) calls[side].set(row[1], (calls[side].get(row[1]) ?? 0) + Number(row[2]));
  }
  const top = (m: Map<string, number>) =>
    Object.fromEntries([...m].sort((a, b) => b[1] - a[1]).slice(0, 16));
  const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
  return {
    own: { calls: sum(calls.tool), top: top(calls.tool) },
    restored: { calls: sum(calls.restored), top: top(calls.restored) },
  };
}

/** The ptrace requests (by number) in a `perf trace -e ptrace` file. */
function ptraceRequests(path: string): Record<string, number> {
  const out = new Map<string, number>();
  for (const m of Deno.readTextFileSync(path).matchAll(/ptrace\(request: (\w+)/g)) {
    out.set(m[1], (out.get(m[1]) ?? 0) + 1);
  }
  return Object.fromEntries([...out].sort((a, b) => b[1] - a[1]));
}

becomeSubreaper();
await prepareCli();
const spec = workloads(true).find((w) => w.name === opts.workload);
if (!spec) throw new Error(`no workload ${opts.workload}`);
const work = await Deno.makeTempDir({ prefix: "restore-syscalls-" });
const w = await startWorkload(spec, work);
const run = async (argv: string[], log: string) => {
  const child = spawnChild(argv, `${log}.out`, `${log}.err`);
  const r = await waitChild(child);
  adopt(w.child.pid); // a restored process with this pid is ours to kill
  if (r.status.kind !== "exited" || r.status.code !== 0) {
    throw new Error(`${argv.join(" ")}: ${Deno.readTextFileSync(`${log}.err`).slice(-400)}`);
  }
};
const cli = new URL("../../cli.ts", import.meta.url).pathname;
try {
  await cryoDump(w, `${work}/cryo`, `${work}/cryo-dump`, { denoFlags: [] });
  Deno.mkdirSync(`${work}/criu`);
  await run(
    [opts.criu, "dump", "-t", String(w.child.pid), "-D", `${work}/criu`, "--leave-running"]
      .concat("--shell-job"),
    `${work}/criu-dump`,
  );
  for (let i = 0; i < Number(opts.rounds); i++) {
    for (const tool of ["cryo", "criu"] as const) {
      const cmd = tool === "cryo"
        ? [Deno.execPath(), "run", "-A", cli, "restore", `${work}/cryo`, "--detach", "--json"]
        : [opts.criu, "restore", "-D", `${work}/criu`, "-d", "--shell-job"];
      const files = { s: `${work}/${tool}-${i}-s.txt`, p: `${work}/${tool}-${i}-p.txt` };
      for (const [flags, out] of [[["-s"], files.s], [["-e", "ptrace"], files.p]] as const) {
        await killWorkload(w);
        await run([opts.perf, "trace", ...flags, "-o", out, "--", ...cmd], `${work}/${tool}-${i}`);
        await new Promise((r) => setTimeout(r, 200));
      }
      const toolComm = tool === "cryo" ? /^(deno|V8 |tokio)/ : /^criu/;
      console.log(JSON.stringify({
        tool,
        round: i + 1,
        ...summary(files.s, toolComm),
        ptrace: ptraceRequests(files.p),
      }));
    }
  }
} finally {
  await killWorkload(w).catch(() => {});
  Deno.removeSync(work, { recursive: true });
}
