/**
 * `deno task bench --vs-criu`: cryo side by side with CRIU (the reference
 * tool, when a `criu` binary is on PATH or in $CRIU) on the same workload
 * process, interleaved, each command after a `sync` and the same memory warm-up:
 * `dump --leave-running` (cryo with and without --no-sync; CRIU's
 * `dump -t PID -D DIR --leave-running --shell-job`), then the workload is
 * killed and restored by each tool in turn (`criu restore -D DIR -d --shell-job`
 * first, as CRIU puts the process in a new time namespace that cryo does not
 * dump; then `cryo restore --detach`), and checks its memory after each.
 * Figures: wall time of each command (Deno start-up included for cryo),
 * the freeze the workload's heartbeat saw, image size, peak RSS.
 *
 * @module
 */

import { adopt, type ChildResult, spawnChild, waitChild } from "./procs.ts";
import {
  cryoDump,
  cryoRestore,
  type CryoRuntime,
  flushDirty,
  warmMemory,
  writeRanges,
} from "./measure.ts";
import {
  gapsOf,
  killWorkload,
  type RunningWorkload,
  verifyWorkload,
  type WorkloadSpec,
} from "./workloads.ts";

/** The criu binary to compare with: $CRIU, else the first `criu` on PATH; undefined if none. */
export function findCriu(): string | undefined {
  const candidates = [
    Deno.env.get("CRIU"),
    ...(Deno.env.get("PATH") ?? "").split(":").filter(Boolean).map((d) => `${d}/criu`),
  ];
  for (const c of candidates) {
    if (!c) continue;
    try {
      if (Deno.statSync(c).isFile) return c;
    } catch { /* next */ }
  }
  return undefined;
}

/** One command of the comparison. */
export interface ToolRun {
  /** Wall time of the command (s). */
  wallSeconds: number;
  /** The longest heartbeat gap inside a dump (s): the freeze the workload saw. */
  seenFreezeSeconds?: number;
  /** Bytes of the image directory (dumps). */
  imageBytes?: number;
  /** Peak RSS of the command (bytes). */
  maxRssBytes: number;
  /** CPU time of the command, user + system (s): what it costs whatever else runs. */
  cpuSeconds: number;
}

/** One repetition of the comparison. */
export interface VsRepetition {
  cryoDump: ToolRun;
  cryoDumpNoSync: ToolRun;
  criuDump: ToolRun;
  cryoRestore: ToolRun;
  criuRestore: ToolRun;
  cryoFirst: boolean;
}

function dirBytes(dir: string): number {
  let n = 0;
  for (const e of Deno.readDirSync(dir)) {
    const p = `${dir}/${e.name}`;
    n += e.isDirectory ? dirBytes(p) : Deno.statSync(p).size;
  }
  return n;
}

function longestGapMs(w: RunningWorkload, fromMs: number, toMs: number): number | undefined {
  const inside = gapsOf(w).filter((g) => g.toMs > fromMs && g.fromMs < toMs);
  return inside.length ? inside.reduce((a, g) => Math.max(a, g.toMs - g.fromMs), 0) : undefined;
}

async function runCriu(
  argv: string[],
  logBase: string,
): Promise<{ r: ChildResult; startMs: number }> {
  const child = spawnChild(argv, `${logBase}.out`, `${logBase}.err`);
  const r = await waitChild(child);
  if (r.status.kind !== "exited" || r.status.code !== 0) {
    let log = "";
    try {
      log = Deno.readTextFileSync(`${logBase}.err`).split("\n").slice(-15).join("\n");
    } catch { /* none */ }
    throw new Error(`${argv.slice(0, 2).join(" ")} failed (${JSON.stringify(r.status)}):\n${log}`);
  }
  return { r, startMs: child.spawnedAtEpochMs };
}

/** `criu dump -t PID -D DIR --leave-running --shell-job`. */
async function criuDump(
  criu: string,
  w: RunningWorkload,
  dir: string,
  logBase: string,
): Promise<ToolRun> {
  await Deno.mkdir(dir, { recursive: true });
  const { r, startMs } = await runCriu(
    [criu, "dump", "-t", String(w.child.pid), "-D", dir, "--leave-running", "--shell-job"],
    logBase,
  );
  await new Promise((res) => setTimeout(res, 30)); // the gap line comes once it runs again
  const gap = longestGapMs(w, startMs, startMs + r.wallSeconds * 1000);
  return {
    wallSeconds: r.wallSeconds,
    seenFreezeSeconds: gap === undefined ? undefined : gap / 1000,
    imageBytes: dirBytes(dir),
    maxRssBytes: r.maxRssBytes,
    cpuSeconds: r.userSeconds + r.systemSeconds,
  };
}

/** `criu restore -D DIR -d --shell-job`; resolves once the restored root beats again. */
async function criuRestore(
  criu: string,
  w: RunningWorkload,
  dir: string,
  logBase: string,
): Promise<ToolRun> {
  let res;
  try {
    res = await runCriu([criu, "restore", "-D", dir, "-d", "--shell-job"], logBase);
  } finally {
    adopt(w.child.pid); // re-parented to the bench (a subreaper) when criu exits
  }
  const deadline = performance.now() + 10_000;
  while (!gapsOf(w).some((g) => g.toMs > res.startMs)) {
    if (performance.now() > deadline) throw new Error("the process restored by criu does not run");
    await new Promise((r) => setTimeout(r, 2));
  }
  return {
    wallSeconds: res.r.wallSeconds,
    maxRssBytes: res.r.maxRssBytes,
    cpuSeconds: res.r.userSeconds + res.r.systemSeconds,
  };
}

/**
 * Runs `reps` (+ `warmupReps` not counted) repetitions of the comparison on
 * the running workload `w`; the workload is restored by each tool in turn
 * and its memory checked after each restore. Returns the counted repetitions.
 */
export async function compareWithCriu(
  criu: string,
  w: RunningWorkload,
  workDir: string,
  opts: {
    reps: number;
    warmupReps: number;
    warm: boolean;
    rt: CryoRuntime;
    log: (s: string) => void;
    /** Flags of the second cryo dump (default `--no-sync`). */
    variantFlags?: string[];
  },
): Promise<VsRepetition[]> {
  const spec: WorkloadSpec = w.spec;
  const out: VsRepetition[] = [];
  try {
    await repetitions();
  } catch (e) {
    // Keep the repetitions done: the caller reports the error with them.
    (e as { repsDone?: VsRepetition[] }).repsDone = out;
    throw e;
  }
  return out;

  async function repetitions(): Promise<void> {
    for (let i = -opts.warmupReps; i < opts.reps; i++) {
      const base = `${workDir}/${spec.name}-vs-${i}`;
      const cryoFirst = Math.abs(i % 2) === 1;
      const rangesBytes = writeRanges(w.child.pid, `${base}.ranges`);
      const warmBytes = Math.round(rangesBytes * 1.1 * (spec.processes ?? 1)) + (256 << 20);
      const warmed = async <T>(fn: () => Promise<T>): Promise<T> => {
        await flushDirty();
        if (opts.warm) await warmMemory(warmBytes, `${base}.warm.log`);
        return await fn();
      };
      const cryoImg = `${base}.cryo`;
      const cryoNsImg = `${base}.cryo-nosync`;
      const criuImg = `${base}.criu`;
      try {
        const cryoD = async (): Promise<ToolRun> => {
          const d = await warmed(() => cryoDump(w, cryoImg, `${base}.cryo-dump`, opts.rt));
          return {
            wallSeconds: d.process.wallSeconds,
            seenFreezeSeconds: d.observedFreezeSeconds ?? undefined,
            imageBytes: dirBytes(cryoImg),
            maxRssBytes: d.process.maxRssBytes,
            cpuSeconds: d.process.userSeconds + d.process.systemSeconds,
          };
        };
        const cryoNs = async (): Promise<ToolRun> => {
          const d = await warmed(() =>
            cryoDump(
              w,
              cryoNsImg,
              `${base}.cryo-dump-ns`,
              opts.rt,
              opts.variantFlags ?? ["--no-sync"],
            )
          );
          const imageBytes = dirBytes(cryoNsImg);
          // Never restored: removed at once, so it does not weigh on the dumps after it.
          await Deno.remove(cryoNsImg, { recursive: true });
          return {
            wallSeconds: d.process.wallSeconds,
            seenFreezeSeconds: d.observedFreezeSeconds ?? undefined,
            imageBytes,
            maxRssBytes: d.process.maxRssBytes,
            cpuSeconds: d.process.userSeconds + d.process.systemSeconds,
          };
        };
        const criuD = () => warmed(() => criuDump(criu, w, criuImg, `${base}.criu-dump`));
        let cryoDumpRun: ToolRun, cryoNsRun: ToolRun, criuDumpRun: ToolRun;
        // Each image kept on disk makes the next dumps' page cache dearer on this VM (a third
        // 1.5 GiB image costs ~2.5x the system CPU of the first): the no-sync image goes at once,
        // and the order gives each of the three dumps the same images before it over two
        // repetitions (none or one).
        if (cryoFirst) {
          cryoNsRun = await cryoNs();
          cryoDumpRun = await cryoD();
          criuDumpRun = await criuD();
        } else {
          criuDumpRun = await criuD();
          cryoNsRun = await cryoNs();
          cryoDumpRun = await cryoD();
        }
        const cryoR = async (): Promise<ToolRun> => {
          await killWorkload(w);
          const r = await warmed(() =>
            cryoRestore(w, cryoImg, true, `${base}.cryo-restore`, opts.rt)
          );
          await verifyWorkload(w);
          return {
            wallSeconds: r.process.wallSeconds,
            maxRssBytes: r.process.maxRssBytes,
            cpuSeconds: r.process.userSeconds + r.process.systemSeconds,
          };
        };
        const criuR = async (): Promise<ToolRun> => {
          await killWorkload(w);
          const r = await warmed(() => criuRestore(criu, w, criuImg, `${base}.criu-restore`));
          await verifyWorkload(w);
          return r;
        };
        // CRIU restores into a new time namespace (to keep CLOCK_MONOTONIC), which cryo refuses
        // to dump: CRIU's restore always comes first, cryo's restore gives the next workload.
        const criuRestoreRun = await criuR();
        const cryoRestoreRun = await cryoR();
        const rep: VsRepetition = {
          cryoDump: cryoDumpRun,
          cryoDumpNoSync: cryoNsRun,
          criuDump: criuDumpRun,
          cryoRestore: cryoRestoreRun,
          criuRestore: criuRestoreRun,
          cryoFirst,
        };
        const f = (x?: number) => x === undefined ? "-" : x.toFixed(3);
        opts.log(
          `${spec.name} vs criu ${i < 0 ? "warm-up" : `#${i + 1}`}: dump ${
            f(rep.cryoDump.wallSeconds)
          } (no-sync ${f(rep.cryoDumpNoSync.wallSeconds)}) vs ${f(rep.criuDump.wallSeconds)} s, ` +
            `seen freeze ${f(rep.cryoDump.seenFreezeSeconds)} vs ${
              f(rep.criuDump.seenFreezeSeconds)
            } s, restore ${f(rep.cryoRestore.wallSeconds)} vs ${f(rep.criuRestore.wallSeconds)} s` +
            `, CPU dump ${f(rep.cryoDump.cpuSeconds)} vs ${f(rep.criuDump.cpuSeconds)} s`,
        );
        if (i >= 0) out.push(rep);
      } finally {
        for (const d of [cryoImg, cryoNsImg, criuImg]) {
          await Deno.remove(d, { recursive: true }).catch(() => {});
        }
      }
    }
  }
}

function median(xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return NaN;
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** The comparison of one workload: medians of per-repetition figures and ratios (cryo / CRIU). */
export interface VsSummary {
  name: string;
  reps: VsRepetition[];
  /** Error of the workload (a failed command or a failed memory check). */
  error?: string;
}

/** Table rows (header first) of the comparison: medians, ratios cryo / CRIU. */
export function vsRows(results: VsSummary[], variantFlags?: string[]): string[][] {
  const variant = variantFlags?.join(" ").replace(/^--/, "") ?? "no-sync";
  const rows = [[
    "workload",
    "dump s cryo",
    variant,
    "criu",
    "dump x",
    `${variant} x`,
    "seen freeze s cryo",
    "criu",
    "freeze x",
    "restore s cryo",
    "criu",
    "restore x",
    "image MiB cryo",
    "criu",
    "peak RSS MiB cryo",
    "dump CPU s cryo",
    "criu",
    "restore CPU s cryo",
    "criu",
    `${variant} seen freeze s`,
    `${variant} dump CPU s`,
  ]];
  for (const r of results) {
    if (!r.reps.length) {
      rows.push([r.name, ...Array(20).fill("-").map((x, i) => i === 0 ? `FAILED` : x)]);
      continue;
    }
    const m = (f: (x: VsRepetition) => number | undefined) =>
      median(r.reps.map((x) => f(x) ?? NaN));
    const s = (x: number, d = 3) => Number.isFinite(x) ? x.toFixed(d) : "-";
    const ratio = (
      f: (x: VsRepetition) => number | undefined,
      g: (x: VsRepetition) => number | undefined,
    ) => s(m((x) => (f(x) ?? NaN) / (g(x) ?? NaN)), 2) + "x";
    rows.push([
      r.name,
      s(m((x) => x.cryoDump.wallSeconds)),
      s(m((x) => x.cryoDumpNoSync.wallSeconds)),
      s(m((x) => x.criuDump.wallSeconds)),
      ratio((x) => x.cryoDump.wallSeconds, (x) => x.criuDump.wallSeconds),
      ratio((x) => x.cryoDumpNoSync.wallSeconds, (x) => x.criuDump.wallSeconds),
      s(m((x) => x.cryoDump.seenFreezeSeconds)),
      s(m((x) => x.criuDump.seenFreezeSeconds)),
      ratio((x) => x.cryoDump.seenFreezeSeconds, (x) => x.criuDump.seenFreezeSeconds),
      s(m((x) => x.cryoRestore.wallSeconds)),
      s(m((x) => x.criuRestore.wallSeconds)),
      ratio((x) => x.cryoRestore.wallSeconds, (x) => x.criuRestore.wallSeconds),
      s(m((x) => x.cryoDump.imageBytes! / 2 ** 20), 0),
      s(m((x) => x.criuDump.imageBytes! / 2 ** 20), 0),
      s(
        m((x) =>
          Math.max(
            x.cryoDump.maxRssBytes,
            x.cryoDumpNoSync.maxRssBytes,
            x.cryoRestore.maxRssBytes,
          ) /
          2 ** 20
        ),
        0,
      ),
      s(m((x) => x.cryoDump.cpuSeconds)),
      s(m((x) => x.criuDump.cpuSeconds)),
      s(m((x) => x.cryoRestore.cpuSeconds)),
      s(m((x) => x.criuRestore.cpuSeconds)),
      s(m((x) => x.cryoDumpNoSync.seenFreezeSeconds)),
      s(m((x) => x.cryoDumpNoSync.cpuSeconds)),
    ]);
  }
  return rows;
}
