/**
 * `deno run -A scripts/bench/lazy_profile.ts [MiB...]` (default 64 512
 * 2048; `ROUNDS=n`, default 3): `restore --lazy` phase by phase, in this
 * process, the steps of engine/restore/mod.ts `restore()` called one by
 * one (checksums off): wall time and cryo's own CPU time (user+sys) per
 * phase, the restored tree's CPU time up to the end of its program
 * (schedstat), and the time to its first heartbeat (scripts/bench/workload.c
 * anon). Dumps the anon workload once per size, then restores each image
 * `ROUNDS` times, sizes interleaved; prints the medians. On a loaded
 * machine compare the CPU columns across sizes.
 *
 * @module
 */
import * as nodeProcess from "node:process";
import { resolve } from "node:path";
import { checkpoint } from "../../engine/dump/mod.ts";
import { preflight } from "../../engine/restore/mod.ts";
import { verifyImageDir } from "../../engine/image/manifest.ts";
import { validateImage } from "../../engine/image/validate.ts";
import { compileTree } from "../../engine/restore/restorable.ts";
import { Refusals } from "../../engine/support.ts";
import { reportInetUses } from "../../engine/fds/inet_plan.ts";
import { LazyServer } from "../../engine/memory/lazy_serve.ts";
import { ProvidedFds } from "../../engine/restore/provided.ts";
import { RestoreSession, type RestoreUnit } from "../../engine/restore/session.ts";
import { CreatedSysvShm } from "../../engine/memory/sysvshm.ts";
import type { ProcessImage } from "../../engine/model.ts";
import { adopt, becomeSubreaper, cleanupProcesses, epochMs } from "./procs.ts";
import {
  gapsOf,
  killWorkload,
  type RunningWorkload,
  startWorkload,
  verifyWorkload,
} from "./workloads.ts";

function cpu(): number {
  const u = nodeProcess.cpuUsage();
  return (u.user + u.system) / 1000;
}

type Phases = Record<string, { wall: number; cpu: number }>;

/** The server's start-up work (LazyServer.startWork) per image directory, last round. */
const startWork = new Map<string, string>();

async function restoreProfiled(dir: string, w: RunningWorkload): Promise<Phases> {
  const ph: Phases = {};
  let tw = performance.now(), tc = cpu();
  const t0 = epochMs();
  const mark = (name: string) => {
    const nw = performance.now(), nc = cpu();
    ph[name] = { wall: nw - tw, cpu: nc - tc };
    tw = nw, tc = nc;
  };
  const abs = resolve(dir);
  const { manifest, images } = await verifyImageDir(abs, { checksums: false });
  mark("read images");
  validateImage(abs, manifest, images.map((i) => i.process));
  mark("validate");
  const byPid = new Map<number, ProcessImage>(images.map((i) => [i.process.pid, i.process]));
  const pathOf = (pid: number) => `${abs}/${manifest.processes.find((p) => p.pid === pid)!.file}`;
  const refusals = new Refusals([]);
  reportInetUses(images.map((i) => i.process), refusals);
  const compiled = compileTree(images.map((i) => i.process), {
    pathOf,
    rootPid: manifest.rootPid,
    ghosts: manifest.ghosts,
    lazy: true,
  }, refusals);
  const units: RestoreUnit[] = manifest.processes.map((entry) => ({
    image: byPid.get(entry.pid)!,
    path: pathOf(entry.pid),
    compiled: compiled.processes.get(entry.pid)!,
  }));
  mark("compile");
  const plan = { manifest, units, ptys: compiled.ptys, ghosts: compiled.ghosts, dir: abs };
  await preflight(plan);
  mark("preflight");
  const shm = CreatedSysvShm.create(plan.manifest.sysvShm ?? [], plan.dir);
  const provided = await ProvidedFds.open(plan.ptys, plan.ghosts, plan.dir);
  mark("provided");
  const session = new RestoreSession(
    plan.units,
    (e) => {
      if (e.type === "launched" || e.type === "exec" || e.type === "program-done") mark(e.type);
    },
    undefined,
    provided,
    () => false,
  );
  session.prepare();
  mark("prepare tail");
  const treeNs = () => {
    let ns = 0;
    for (const t of Deno.readDirSync(`/proc/${manifest.rootPid}/task`)) {
      ns += Number(
        Deno.readTextFileSync(`/proc/${manifest.rootPid}/task/${t.name}/schedstat`).split(" ")[0],
      );
    }
    return ns / 1e6;
  };
  const before = treeNs();
  const lazy = LazyServer.take(plan.units.map((u) => ({ ...u, pid: u.image.pid })))!;
  mark("lazy take");
  startWork.set(dir, JSON.stringify(lazy.startWork));
  const after = treeNs();
  ph["tree cpu to program end"] = { wall: NaN, cpu: before };
  ph["tree cpu in take"] = { wall: NaN, cpu: after - before };
  shm.finish();
  session.release();
  mark("release");
  const releasedAt = epochMs();
  adopt(manifest.rootPid);
  let gap;
  const deadline = performance.now() + 10_000;
  while (!(gap = gapsOf(w).find((g) => g.toMs > t0))) {
    lazy.step(5);
    if (performance.now() > deadline) throw new Error("no beat");
  }
  ph["FIRST (epoch)"] = { wall: gap.toMs - t0, cpu: NaN };
  ph["release->first"] = { wall: gap.toMs - releasedAt, cpu: NaN };
  lazy.serve();
  if (lazy.failure) throw new Error(lazy.failure);
  return ph;
}

async function main(): Promise<void> {
  becomeSubreaper();
  const rounds = Number(Deno.env.get("ROUNDS") ?? 3);
  const sizes = Deno.args.length ? Deno.args.map(Number) : [64, 512, 2048];
  const work = await Deno.makeTempDir({ prefix: "cryo-lazyprof-" });
  const ws: { mib: number; w: RunningWorkload; dir: string }[] = [];
  const all: Record<number, Phases[]> = {};
  try {
    for (const mib of sizes) {
      const w = await startWorkload({
        name: `anon-${mib}`,
        description: "",
        program: "c",
        args: ["anon", String(mib)],
        quick: true,
      }, work);
      const dir = `${work}/image-${mib}`;
      await checkpoint(w.child.pid, { dir });
      while (await Deno.stat(`/proc/${w.child.pid}`).then(() => true, () => false)) {
        await new Promise((r) => setTimeout(r, 2));
      }
      ws.push({ mib, w, dir });
      all[mib] = [];
    }
    for (let r = 0; r < rounds; r++) {
      for (const { mib, w, dir } of ws) {
        all[mib].push(await restoreProfiled(dir, w));
        if (r === rounds - 1) await verifyWorkload(w);
        await killWorkload(w);
      }
    }
  } finally {
    await cleanupProcesses();
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
  const names = Object.keys(all[sizes[0]][0]);
  console.log(
    `| phase | ${sizes.map((s) => `${s} MiB wall / cpu (median of ${rounds})`).join(" | ")} |`,
  );
  const med = (xs: number[]) => xs.toSorted((a, b) => a - b)[Math.floor(xs.length / 2)];
  for (const n of names) {
    console.log(`| ${n} | ${
      sizes.map((s) => {
        const w = med(all[s].map((p) => p[n]?.wall ?? NaN)),
          c = med(all[s].map((p) => p[n]?.cpu ?? NaN));
        return `${w.toFixed(1)} / ${c.toFixed(1)}`;
      }).join(" | ")
    } |`);
  }
  for (const { mib, dir } of ws) console.log(`${mib} MiB take-over work: ${startWork.get(dir)}`);
  for (const s of sizes) {
    const sum = all[s].map((p) =>
      Object.entries(p).filter(([, v]) => !Number.isNaN(v.wall) && !Number.isNaN(v.cpu)).reduce(
        (a, [, v]) => a + v.cpu,
        0,
      )
    );
    console.log(`${s} MiB cpu sum per round: ${sum.map((x) => x.toFixed(1)).join(", ")}`);
  }
  console.log(`load average: ${Deno.readTextFileSync("/proc/loadavg").trim()}`);
}

if (import.meta.main) await main();
