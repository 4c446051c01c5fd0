/**
 * Private pid namespaces (`cryo launch`, and dump/restore of what it
 * launched).
 *
 * A launched tree's root is pid 1 of a pid namespace of its own, one level
 * below cryo's, with a mount namespace that is a copy of cryo's plus its
 * own /proc. Such a root is recognised by exactly that
 * ({@link ownNamespaceRoot}): its NSpid has one more level than cryo's and
 * ends in 1, and its mountinfo is cryo's (mount points, types, sources)
 * plus one proc mount on /proc. Every other namespace must be cryo's (the
 * dump refuses the others by name, engine/task/placement.ts).
 *
 * The engine works on such a tree from *inside* its namespaces, so that
 * every pid it reads, records and asks for is the pid the tree sees:
 *
 * - dump: an entrant (engine/pidns/programs.ts) joins the pid and mount
 *   namespaces and runs cryo's engine there (engine/pidns/inner.ts), which
 *   dumps pid 1 as usual and marks the manifest `pidNamespace: "own"`;
 *   without `leaveRunning`, the tree (which the inner engine cannot kill:
 *   pid 1 ignores SIGKILL from its own namespace) is killed from here, by
 *   its host pid, once the image is complete and while it is still frozen;
 * - restore: a namespace maker creates a fresh pid and mount namespace
 *   whose init (pid 1, cryo's child) mounts /proc and waits; cryo's engine
 *   is started in the namespace, seizes pid 1, lets it exec the root image
 *   and restores the tree with its recorded (inner) pids, whatever pids
 *   the host uses. The engine's own tasks there get pids above every
 *   recorded one (ns_last_pid) and exit once the tree runs.
 *
 * @module
 */

import { resolve } from "../path.ts";
import { posixSpawn } from "../../ffi/spawn.ts";
import { rawSyscall } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";
import { O } from "../../ffi/ns.ts";
import { waitPid, type WaitStatus, WNOHANG } from "../../ffi/wait.ts";
import { readStatus } from "../proc/status.ts";
import { CryoError, RestoreError, TargetError } from "../errors.ts";
import type { CheckpointOptions, CheckpointResult } from "../dump/mod.ts";
import type { ExitStatus, RestoredTree, RestoreOptions } from "../restore/mod.ts";
import type { Manifest } from "../model.ts";
import { type Exec, writeEntrant, writeNamespaceMaker } from "./programs.ts";
import { inOtherUserNs, rootlessIds } from "./userns.ts";
import { checkImageDirTrust } from "../restore/trust.ts";
import { extraNamespaceFlags, hiddenPath, namespaceExtrasOf } from "./extras.ts";
import { sourceURL } from "../modules.ts";
import { sleepSync } from "../sleep_sync.ts";

export { manifestPidNamespace, ownNamespaceRoot } from "./detect.ts";

/** The manifest value of a tree dumped in a pid namespace of its own. */
export const OWN_PID_NAMESPACE = "own";

/** `PATH` lookup of a command name (a name with a slash is taken as is). */
function findExecutable(cmd: string): string {
  if (cmd.includes("/")) return resolve(cmd);
  for (const dir of (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":")) {
    const p = `${dir || "."}/${cmd}`;
    try {
      const st = Deno.statSync(p);
      if (st.isFile && ((st.mode ?? 0) & 0o111) !== 0) return resolve(p);
    } catch { /* not here */ }
  }
  throw new CryoError(`cannot launch ${cmd}: not found in PATH`);
}

function environment(): string[] {
  return Object.entries(Deno.env.toObject()).map(([k, v]) => `${k}=${v}`);
}

/** Runs `exe` (an emitted program) with fd 7 open on a fresh report file; returns the u32s it wrote. */
function runReporting(
  exe: string,
  argv0: string,
  scratch: string,
): { pids: number[]; st: WaitStatus } {
  const report = `${scratch}/pids`;
  try {
    const pid = posixSpawn(exe, [argv0], {
      fileActions: [{
        kind: "open",
        fd: 7,
        path: report,
        flags: O.WRONLY | O.CREAT | O.TRUNC,
        mode: 0o600,
      }],
    });
    const st = waitPid(pid);
    let bytes = new Uint8Array();
    try {
      bytes = Deno.readFileSync(report);
    } catch { /* nothing reported */ }
    const view = new DataView(bytes.buffer);
    const pids: number[] = [];
    for (let i = 0; i + 4 <= bytes.length; i += 4) pids.push(view.getInt32(i, true));
    return { pids, st };
  } finally {
    Deno.removeSync(exe);
  }
}

/** Resolves when process `pid` (cryo's child) ends; polls without blocking the event loop. */
export function watchChild(pid: number): Promise<ExitStatus> {
  return new Promise((done) => {
    const tick = () => {
      let st: WaitStatus;
      try {
        st = waitPid(pid, WNOHANG);
      } catch {
        done({ signal: 9 });
        return;
      }
      if (st.kind === "exited") done({ code: st.code });
      else if (st.kind === "signaled") done({ signal: st.signal });
      else setTimeout(tick, 10);
    };
    tick();
  });
}

/** A tree started by {@link launch}. */
export interface LaunchedTree {
  /** Host pid of the namespace's init (the command; pid 1 inside). */
  pid: number;
  /** Resolves when it exits (cryo is its parent). */
  exited: Promise<ExitStatus>;
}

/** More namespaces for {@link launch}. */
export interface LaunchNamespaces {
  /** A UTS namespace of its own. */
  uts?: boolean;
  /** Its host name (implies `uts`). */
  hostname?: string;
  /** An IPC namespace of its own. */
  ipc?: boolean;
}

/**
 * Starts `cmd args` as pid 1 of a new pid namespace, with a new mount
 * namespace whose /proc is its own. The command is cryo's child; cryo is
 * not in the tree.
 */
export function launch(
  cmd: string,
  args: readonly string[],
  more: LaunchNamespaces = {},
): LaunchedTree {
  const path = findExecutable(cmd);
  const scratch = Deno.makeTempDirSync({ prefix: "cryo-launch-" });
  try {
    const exe = writeNamespaceMaker({
      exec: { path, argv: [cmd, ...args], env: environment() },
      waitGo: false,
      unshare: extraNamespaceFlags({ uts: more.uts || more.hostname !== undefined, ipc: more.ipc }),
      ...(more.hostname !== undefined ? { hostname: more.hostname } : {}),
      userNs: rootlessIds(),
    });
    const { pids, st } = runReporting(exe, "cryo-launch", scratch);
    if (st.kind !== "exited" || st.code !== 0 || pids.length < 1) {
      throw new CryoError(
        `cannot launch ${cmd}: the namespace could not be made (${
          st.kind === "signaled" ? `signal ${st.signal}` : `status ${JSON.stringify(st)}`
        })`,
      );
    }
    const pid = pids[0];
    let exited: Promise<ExitStatus> | undefined;
    return {
      pid,
      get exited() {
        exited ??= watchChild(pid);
        return exited;
      },
    };
  } finally {
    Deno.removeSync(scratch, { recursive: true });
  }
}

/** How cryo's engine is run inside a namespace: deno running engine/pidns/inner.ts. */
function engineExec(request: unknown): Exec {
  const inner = sourceURL("engine/pidns/inner.ts");
  return {
    path: Deno.execPath(),
    argv: ["deno", "run", "-A", "--quiet", inner, JSON.stringify(request)],
    env: environment(),
  };
}

/** What the inner engine writes to its result file. */
export type InnerResult =
  | {
    ok: true;
    dir?: string;
    manifest?: Manifest;
    stats?: CheckpointResult["stats"];
    networkLock?: CheckpointResult["networkLock"];
    pids?: number[];
    seconds?: number;
  }
  | { ok: false; message: string; kind: string };

function readResult(file: string): InnerResult | undefined {
  try {
    return JSON.parse(Deno.readTextFileSync(file));
  } catch {
    return undefined;
  }
}

function failure(r: InnerResult | undefined, what: string): CryoError {
  if (r && !r.ok) {
    if (r.kind === "TargetError") return new TargetError(r.message);
    if (r.kind === "RestoreError") return new RestoreError(r.message);
    return new CryoError(r.message);
  }
  return new CryoError(`${what}: cryo's engine in the namespace ended without a result`);
}

/**
 * Dumps the tree of `pid` (see {@link ownNamespaceRoot}) from inside its
 * namespaces; the image records the pids as the tree sees them.
 */
export async function checkpointInNamespace(
  pid: number,
  opts: CheckpointOptions,
): Promise<CheckpointResult> {
  if (opts.include) {
    throw new CryoError(
      `cannot dump ${pid}: exclusions are not supported for a tree in its own pid namespace`,
    );
  }
  const scratch = Deno.makeTempDirSync({ prefix: "cryo-nsdump-" });
  const resultFile = `${scratch}/result.json`;
  try {
    const extras = namespaceExtrasOf(pid);
    const hidden = hiddenPath(extras.mounts.map((m) => m.mountPoint), [
      { what: "image directory", path: resolve(opts.dir) },
      { what: "scratch directory", path: scratch },
    ]);
    if (hidden) throw new CryoError(`cannot dump ${pid}: ${hidden}`);
    const exe = writeEntrant(
      pid,
      engineExec({
        extras,
        op: "dump",
        result: resultFile,
        dir: resolve(opts.dir),
        leaveRunning: !!opts.leaveRunning,
        optIns: opts.optIns ?? [],
        sync: opts.sync !== false,
      }),
      extraNamespaceFlags(extras),
      inOtherUserNs(pid),
    );
    const child = posixSpawn(exe, ["cryo-enter"], {});
    Deno.removeSync(exe);
    // Without leaveRunning the inner engine stops, tree frozen, once the image is complete.
    let result: InnerResult | undefined;
    for (;;) {
      const st = waitPid(child, WNOHANG);
      result = readResult(resultFile);
      if (st.kind === "exited" || st.kind === "signaled") break;
      if (result?.ok && !opts.leaveRunning) {
        rawSyscall(SYS.kill, pid, 9); // the whole namespace dies with its init
        waitPid(child);
        break;
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    if (!result?.ok) throw failure(result, `cannot dump ${pid}`);
    const out = {
      dir: result.dir!,
      manifest: result.manifest!,
      stats: result.stats!,
      ...(result.networkLock ? { networkLock: result.networkLock } : {}),
    };
    opts.onEvent?.({ type: "done", stats: out.stats });
    return out;
  } finally {
    Deno.removeSync(scratch, { recursive: true });
  }
}

/** The host pid of `inner`, a child of `init` (host pid), once it is one. */
function hostPidOf(init: number, inner: number): number {
  const deadline = Date.now() + 10_000;
  for (;;) {
    let kids: number[] = [];
    try {
      kids = Deno.readTextFileSync(`/proc/${init}/task/${init}/children`).trim().split(/\s+/)
        .filter((x) => x).map(Number);
    } catch { /* init gone */ }
    for (const k of kids) {
      try {
        if (readStatus(k).nspid.at(-1) === inner) return k;
      } catch { /* gone */ }
    }
    if (Date.now() > deadline) {
      throw new RestoreError(
        `cannot restore: the restored root ${inner} did not come under its init`,
      );
    }
    sleepSync(2);
  }
}

/**
 * Restores a tree into a fresh pid namespace (and mount namespace with its
 * own /proc): the same pids inside, any pids on the host. A tree dumped in
 * its own namespace (`pidNamespace: "own"`) gets its root back as pid 1;
 * any other tree (`restore --new-pid-ns`) runs under a tiny init cryo
 * emits, which reaps orphans and exits with the root's status. The
 * returned root pid is the host's.
 */
export function restoreInNamespace(dir: string, opts: RestoreOptions): RestoredTree {
  const t0 = performance.now();
  const abs = resolve(dir);
  checkImageDirTrust(abs, opts.trustImageOwner);
  const manifest = JSON.parse(Deno.readTextFileSync(`${abs}/manifest.json`)) as Manifest;
  const userNs = rootlessIds();
  const own = manifest.pidNamespace === OWN_PID_NAMESPACE;
  if (own && manifest.rootPid !== 1) {
    throw new RestoreError(`cannot restore: the image's root is pid ${manifest.rootPid}, not 1`);
  }
  const ids = manifest.processes.flatMap((p) => [p.pid, ...p.threads]);
  if (!own && ids.includes(1)) {
    throw new RestoreError("cannot restore: pid 1 of a new namespace is its init");
  }
  const root = manifest.processes.find((p) => p.pid === manifest.rootPid)!;
  const scratch = Deno.makeTempDirSync({ prefix: "cryo-nsrestore-" });
  const resultFile = `${scratch}/result.json`;
  let init: number | undefined;
  try {
    const hidden = hiddenPath((manifest.namespaces?.mounts ?? []).map((m) => m.mountPoint), [
      { what: "image directory", path: abs },
      { what: "scratch directory", path: scratch },
    ]);
    if (hidden) throw new RestoreError(`cannot restore: ${hidden}`);
    const rootImage = `${abs}/${root.file}`;
    const exe = writeNamespaceMaker(
      {
        ...(own
          ? { exec: { path: rootImage, argv: [rootImage], env: [] } }
          : { reapFor: manifest.rootPid }),
        waitGo: true,
        lastPid: Math.max(...ids) + 64,
        unshare: extraNamespaceFlags(manifest.namespaces),
        userNs,
      },
      engineExec({
        op: "restore",
        adopt: own,
        result: resultFile,
        dir: abs,
        verifyChecksums: opts.verifyChecksums ?? true,
        optIns: opts.optIns ?? [],
        trustImageOwner: !!opts.trustImageOwner,
        allowClockBackwards: !!opts.allowClockBackwards,
        newAuditSession: !!opts.newAuditSession,
        inheritFds: [...(opts.inheritFds ?? new Map())],
      }),
    );
    const { pids, st } = runReporting(exe, "cryo-ns", scratch);
    init = pids[0];
    if (st.kind !== "exited" || st.code !== 0 || pids.length < 2) {
      throw new RestoreError(`cannot restore: the pid namespace could not be made`);
    }
    const engineStatus = waitPid(pids[1]); // cryo's engine in the namespace
    const result = readResult(resultFile);
    if (!result?.ok) {
      throw failure(result, `cannot restore (engine ${JSON.stringify(engineStatus)})`);
    }
    const nsInit = init;
    const rootPid = own ? nsInit : hostPidOf(nsInit, manifest.rootPid);
    let exited: Promise<ExitStatus> | undefined;
    init = undefined;
    return {
      rootPid,
      pids: result.pids ?? [],
      seconds: (performance.now() - t0) / 1000,
      get exited() {
        exited ??= watchChild(nsInit);
        return exited;
      },
      kill(signal = 15) {
        rawSyscall(SYS.kill, rootPid, signal);
      },
    };
  } finally {
    if (init !== undefined && init > 0) {
      rawSyscall(SYS.kill, init, 9); // the namespace dies with it
      try {
        waitPid(init);
      } catch { /* gone */ }
    }
    Deno.removeSync(scratch, { recursive: true });
  }
}
