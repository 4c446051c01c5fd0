/**
 * Restoring a checkpoint: verify the image directory, compile every
 * process, check that nothing is in the way, then run the restore session.
 *
 * ```ts
 * import { restore } from "./mod.ts";
 * const tree = await restore("/tmp/ck");
 * console.log(tree.rootPid, await tree.exited);
 * ```
 *
 * @module
 */

import { DeletedCwds } from "./deleted_cwd.ts";
import { checkMqueues } from "../fds/mqueue.ts";
import { checkSysvUsed } from "../ipc/sysv_used.ts";
import { checkPolicyNodes } from "../memory/mempolicy.ts";
import { resolve } from "../path.ts";
import { rawSyscall } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";
import { forgetParkedStatus, waitPid, type WaitStatus, WNOHANG } from "../../ffi/wait.ts";
import type { Manifest, ProcessImage } from "../model.ts";
import { IMAGE_FORMAT_VERSION } from "../model.ts";
import { RestoreError } from "../errors.ts";
import { ImageFormatError } from "../image/errors.ts";
import { imageFileName, readManifestSync, verifyImageDir } from "../image/manifest.ts";
import { validateImage } from "../image/validate.ts";
import { compileTree } from "./restorable.ts";
import type { LazyEnsure, LazyServer } from "../memory/lazy_serve.ts";
import { ProvidedFds } from "./provided.ts";
import { checkSysvShmFree, CreatedSysvShm } from "../memory/sysvshm.ts";
import { checkHugePagesFree } from "../memory/hugetlb.ts";
import { checkCgroups } from "../task/placement.ts";
import { Refusals } from "../support.ts";
import { checkInetPorts, reportInetUses } from "../fds/inet_plan.ts";
import type { PlannedPty } from "../fds/tty.ts";
import type { PlannedGhosts } from "../fds/ghost.ts";
import { checkUnixNamesFree } from "../fds/unix.ts";
import {
  checkCredentials,
  checkFdFiles,
  checkFiles,
  checkGroupIdsFree,
  checkPidsFree,
  checkPrivileges,
  checkProcessDirs,
  checkSameDump,
  checkVdso,
  type OwnVdso,
  startOwnVdso,
} from "./checks.ts";
import { checkInotifyPaths } from "../fds/inotify.ts";
import { type RestoreEvent, RestoreSession, type RestoreUnit } from "./session.ts";
import { type ImageToVerify, ImageVerifier } from "./verify_inline.ts";
import { LazyImageVerifier } from "./verify_blocks.ts";
import { checkTaskState, loginuidToWrite } from "../task/mod.ts";
import { checkImageDirTrust, checkOwnCredentials } from "./trust.ts";
import { pausePoint } from "../pause.ts";
import { shrunkImage } from "./intact.ts";
import type { ExistingRoot } from "./session.ts";
import { manifestPidNamespace } from "../pidns/detect.ts";
import { unlockConnections } from "../fds/tcp_lock.ts";
import { closeConnections } from "../fds/inet_plan.ts";
import { checkClocks } from "../task/clocks.ts";
import { importModule } from "../modules.ts";

/** Options of {@link restore}. */
export interface RestoreOptions {
  /** fd number -> replacement: a path, or "fd:N" for the restorer's own fd N (0..2). */
  inheritFds?: Map<number, string>;
  /** Verify every image's checksum (CRC-32) against the manifest (default true). */
  verifyChecksums?: boolean;
  /** Progress callback. */
  onEvent?: (e: RestoreEvent) => void;
  /**
   * `--tcp-close`: the image's TCP connections come back as closed sockets,
   * shut down both ways (an image dumped with `--tcp-established` restores
   * without it then); the network lock of the dump is lifted.
   */
  tcpClose?: boolean;
  /**
   * Opt-ins given on the command line (CLI names: "ext-unix-sk",
   * "tcp-established", "shell-job"); an image that needed one at dump
   * time is refused without it.
   */
  optIns?: string[];
  /**
   * Restore (as root) an image directory owned by, or writable by, a user
   * other than root (engine/restore/trust.ts); default false.
   */
  trustImageOwner?: boolean;
  /**
   * The root's process exists already and waits (engine/pidns/inner.ts):
   * the session seizes it and calls `go()`, after which it execs the root
   * image itself.
   */
  existingRoot?: ExistingRoot;
  /**
   * Restore into a fresh pid namespace (engine/pidns/), with the recorded
   * pids inside it, even for a tree that was not in one (`--new-pid-ns`).
   */
  newPidNs?: boolean;
  /**
   * Lazy restore (`--lazy`, engine/memory/lazy.ts): the tree runs before its
   * private anonymous memory is in; the returned tree's `lazy` serves it.
   */
  lazy?: boolean;
  /**
   * With `lazy`: the image's lazy pages are still being written (a
   * migration receiver merging its chain, engine/migrate/stream_flatten.ts);
   * the server asks this before reading any.
   */
  lazyEnsure?: LazyEnsure;
  /**
   * Restore even where CLOCK_MONOTONIC or CLOCK_BOOTTIME is behind the
   * image's (another boot or host): the tree then sees them go back
   * (engine/task/clocks.ts). Default false: such a restore is refused.
   */
  allowClockBackwards?: boolean;
  /**
   * A tree dumped with a set login uid and session id other than the
   * restorer's comes back with its login uid and a new audit session id
   * (the kernel gives one whenever a login uid is written;
   * `--new-audit-session`). Default false: such a restore is refused.
   */
  newAuditSession?: boolean;
}

/** How a restored root ended. */
export type ExitStatus = { code: number; signal?: undefined } | {
  code?: undefined;
  signal: number;
};

/** A handle on a restored tree. */
export interface RestoredTree {
  /** Pid of the restored root (the original pid). */
  rootPid: number;
  /** Every restored pid. */
  pids: number[];
  /** Seconds from start to all tasks running. */
  seconds: number;
  /** Resolves when the root exits (cryo is its parent and reaps it). */
  exited: Promise<ExitStatus>;
  /** Sends a signal to the root. */
  kill(signal?: number): void;
  /** Lazy restore: serves the memory not yet in (run it until done); absent when eager. */
  lazy?: LazyServer;
}

/** Everything restore needs, loaded and checked (no process created yet). */
export interface RestorePlan {
  manifest: Manifest;
  units: RestoreUnit[];
  /** Pseudo-terminals the engine opens and hands to the tree (engine/fds/tty.ts). */
  ptys: PlannedPty[];
  /** Deleted files and memfds the engine re-creates and hands to the tree (engine/fds/ghost.ts). */
  ghosts: PlannedGhosts;
  /** The image directory (absolute). */
  dir: string;
}

/**
 * Loads, verifies and compiles an image directory without creating
 * anything; `tick` is called between its steps (restore's checksum pass
 * in the background).
 */
export async function planRestore(
  dir: string,
  opts: RestoreOptions = {},
  tick?: () => void,
): Promise<RestorePlan> {
  const abs = resolve(dir);
  const { manifest, images } = await verifyImageDir(abs, { checksums: opts.verifyChecksums });
  tick?.();
  if (manifest.formatVersion !== IMAGE_FORMAT_VERSION) {
    throw new RestoreError(
      `cannot restore: image format version ${manifest.formatVersion}, this cryo reads ${IMAGE_FORMAT_VERSION}`,
    );
  }
  // --tcp-close stands for --tcp-established: the connections come back closed.
  const given = [...opts.optIns ?? [], ...opts.tcpClose ? ["tcp-established"] : []];
  const missing = (manifest.optIns ?? []).filter((o) => !given.includes(o));
  if (missing.length) {
    throw new RestoreError(
      `cannot restore: the image needs ${
        missing.map((o) => `--${o}`).join(", ")
      } (its dump needed ${missing.length === 1 ? "it" : "them"}); give the same to restore`,
    );
  }
  validateImage(abs, manifest, images.map((i) => i.process));
  checkSameDump(manifest, images.map((i) => i.process));
  if (opts.tcpClose) closeConnections(images.map((i) => i.process));
  checkClocks(manifest, opts.allowClockBackwards);
  tick?.();
  const byPid = new Map<number, ProcessImage>(images.map((i) => [i.process.pid, i.process]));
  const pathOf = (pid: number) => `${abs}/${manifest.processes.find((p) => p.pid === pid)!.file}`;
  const refusals = new Refusals(opts.optIns);
  reportInetUses(images.map((i) => i.process), refusals);
  const compiled = compileTree(images.map((i) => i.process), {
    pathOf,
    rootPid: manifest.rootPid,
    inheritFds: opts.inheritFds,
    ghosts: manifest.ghosts,
    lazy: opts.lazy,
  }, refusals);
  tick?.();
  const units: RestoreUnit[] = manifest.processes.map((entry) => ({
    image: byPid.get(entry.pid)!,
    path: pathOf(entry.pid),
    compiled: compiled.processes.get(entry.pid)!,
  }));
  return { manifest, units, ptys: compiled.ptys, ghosts: compiled.ghosts, dir: abs };
}

function becomeSubreaper(): void {
  rawSyscall(SYS.prctl, 36, /* PR_SET_CHILD_SUBREAPER */ 1, 0, 0, 0);
}

/** Polls for the root's exit without blocking the event loop. */
function watchExit(pid: number): Promise<ExitStatus> {
  return new Promise((resolveExit) => {
    const tick = () => {
      let st: WaitStatus;
      try {
        st = waitPid(pid, WNOHANG);
      } catch {
        resolveExit({ signal: 9 });
        return;
      }
      if (st.kind === "exited") resolveExit({ code: st.code });
      else if (st.kind === "signaled") resolveExit({ signal: st.signal });
      else setTimeout(tick, 10);
    };
    tick();
  });
}

/** The images of `plan` with their manifest checksums, for an {@link ImageVerifier}. */
function imagesToVerify(plan: RestorePlan): ImageToVerify[] {
  return plan.manifest.processes.map((p) => ({
    path: plan.units.find((u) => u.image.pid === p.pid)!.path,
    checksum: p.checksum,
  }));
}

/**
 * The images that the manifest in `dir` lists, with their checksums, when
 * each is a regular file of the listed name and size: so that their
 * checksum pass starts before the plan reads them. Undefined when anything
 * is not as expected (the plan then finds it and says what).
 */
function manifestImagesToVerify(dir: string): ImageToVerify[] | undefined {
  let manifest: Manifest;
  try {
    manifest = readManifestSync(dir);
  } catch {
    return undefined;
  }
  const out: ImageToVerify[] = [];
  for (const p of manifest.processes) {
    if (p.file !== imageFileName(p.pid)) return undefined;
    const path = `${dir}/${p.file}`;
    try {
      const st = Deno.lstatSync(path);
      if (!st.isFile || st.size !== p.size) return undefined;
    } catch {
      return undefined;
    }
    out.push({ path, checksum: p.checksum });
  }
  return out;
}

/** Whether two lists name the same image files with the same checksums, in the same order. */
function sameImages(a: readonly ImageToVerify[], b: readonly ImageToVerify[]): boolean {
  return a.length === b.length &&
    a.every((x, i) => x.path === b[i].path && x.checksum === b[i].checksum);
}

/** The manifest's per-block checksums of the image of `pid` (absent for older images). */
function pageBlocksOf(plan: RestorePlan, pid: number) {
  return plan.manifest.processes.find((p) => p.pid === pid)?.pageBlocks;
}

/**
 * Everything a restore checks on this host before it creates anything:
 * privileges, the same vdso, backing files and fd files unchanged, cgroups
 * present, pids free, the task state this host can give, listening and
 * bound socket addresses free. Throws a
 * one-line RestoreError. `tick` is called between the checks (as in
 * {@link planRestore}); `existingRoot`: the root's process exists already;
 * `newAuditSession`: as in {@link RestoreOptions}.
 */
export async function preflight(
  plan: RestorePlan,
  { existingRoot, newAuditSession = false }: { existingRoot?: number; newAuditSession?: boolean } =
    {},
  tick?: () => void,
  /** cryo's own vdso facts, started before the plan (checks.ts `startOwnVdso`). */
  ownVdso?: Promise<OwnVdso>,
): Promise<void> {
  checkPrivileges();
  checkOwnCredentials(plan.units.map((u) => u.image));
  await checkVdso(plan.manifest, ownVdso);
  tick?.();
  const processes = plan.units.map((u) => u.image);
  checkFiles(processes);
  checkFdFiles(plan.units);
  checkProcessDirs(processes, plan.manifest.namespaces?.mounts?.map((m) => m.mountPoint));
  checkUnixNamesFree(processes);
  checkInotifyPaths(processes);
  checkCgroups(processes);
  tick?.();
  // A pid still used as a group or session id makes its clone3 fail: named then (runPlanned),
  // not by a walk of every process here (inside a pid namespace, here as before).
  checkPidsFree(processes.filter((p) => p.pid !== existingRoot), existingRoot !== undefined);
  tick?.();
  checkTaskState(processes, newAuditSession, existingRoot !== undefined);
  checkInetPorts(processes);
  checkCredentials(processes);
  for (const proc of processes) checkPolicyNodes(proc); // engine/memory/mempolicy.ts
  const leftovers = checkSysvShmFree(plan.manifest.sysvShm ?? []);
  checkHugePagesFree(
    processes,
    plan.manifest.ghosts,
    (plan.manifest.sysvShm ?? []).filter((s) => !leftovers.has(s.shmid)),
  ); // engine/memory/hugetlb.ts
  checkSysvUsed(plan.manifest.sysvUsed ?? []); // engine/ipc/sysv_used.ts
  checkMqueues(processes); // engine/fds/mqueue.ts
}

/**
 * The pid namespace machinery, loaded only for a restore into a pid
 * namespace (a variable, so that Deno does not load it with every restore).
 */
const PIDNS_MODULE = "engine/pidns/mod.ts";
/** The server of a lazy restore's pages, loaded for `--lazy` only (a variable, as above). */
const LAZY_SERVE_MODULE = "engine/memory/lazy_serve.ts";

/** Pre-copy chains (engine/image/chain.ts and its image writer), loaded for a chain only. */
const CHAIN_MODULE = "engine/image/chain.ts";

/**
 * `flattenForRestore` of engine/image/chain.ts, which is loaded only when
 * the manifest names a parent (an unreadable manifest is left to the
 * restore's own checks, as there).
 */
async function flattenForRestore(dir: string): Promise<string | undefined> {
  let parent: unknown;
  try {
    parent = JSON.parse(Deno.readTextFileSync(`${resolve(dir)}/manifest.json`))?.parent;
  } catch {
    return undefined;
  }
  if (!parent) return undefined;
  const chain: typeof import("../image/chain.ts") = await importModule(CHAIN_MODULE);
  return await chain.flattenForRestore(dir);
}

/** Restores the checkpoint in `dir` with its original pids; resolves once every task runs. */
export async function restore(dir: string, opts: RestoreOptions = {}): Promise<RestoredTree> {
  // A pre-copy chain is restored from a flattened copy (engine/image/chain.ts).
  const flat = await flattenForRestore(dir);
  if (flat) {
    try {
      return await restore(flat, opts);
    } finally {
      await Deno.remove(flat, { recursive: true }).catch(() => {});
    }
  }
  // An image still being merged holds holes where its lazy pages go: only a lazy restore may read it.
  if (opts.lazyEnsure && !opts.lazy) {
    throw new RestoreError("an image still being merged restores only lazily");
  }
  if (!opts.existingRoot && (opts.newPidNs || manifestPidNamespace(dir) === "own")) {
    if (opts.lazy) {
      throw new RestoreError("--lazy is not supported for a restore into a pid namespace");
    }
    const pidns: typeof import("../pidns/mod.ts") = await importModule(PIDNS_MODULE);
    return pidns.restoreInNamespace(dir, opts); // engine/pidns/: a fresh pid namespace
  }
  // engine/memory/lazy_serve.ts is loaded for a lazy restore only, while the plan is made.
  const lazyServe: Promise<typeof import("../memory/lazy_serve.ts")> | undefined = opts.lazy
    ? importModule(LAZY_SERVE_MODULE)
    : undefined;
  const t0 = performance.now();
  // Structure and sizes are checked now; checksums on another thread from the
  // start (ImageVerifier: stepped between the plan's steps and the session's
  // waits; nothing runs before both are done).
  const verify = opts.verifyChecksums ?? true;
  // A lazy restore checks only what it reads before the tree runs; the server checks the rest.
  const byBlocks = verify && opts.lazy && !opts.lazyEnsure;
  const abs = resolve(dir);
  checkImageDirTrust(abs, opts.trustImageOwner);
  const early = verify && !byBlocks ? manifestImagesToVerify(abs) : undefined;
  let verifier: ImageVerifier | LazyImageVerifier | undefined = early
    ? new ImageVerifier(early)
    : undefined;
  try {
    const tick = () => {
      verifier?.step();
    };
    tick(); // first: the checksum pass runs on another thread beside all that follows
    // cryo's own vdso, hashed on the blocking pool while the plan is made (checked by preflight).
    const ownVdso = startOwnVdso();
    let plan: RestorePlan;
    try {
      plan = await planRestore(abs, { ...opts, verifyChecksums: false }, tick);
    } catch (e) {
      // A damaged image: say so by its checksum when that is what differs.
      if (verify && e instanceof ImageFormatError) await verifyImageDir(abs);
      throw e;
    }
    tick();
    await preflight(
      plan,
      { existingRoot: opts.existingRoot?.pid, newAuditSession: opts.newAuditSession },
      tick,
      ownVdso,
    );
    tick();
    const processes = plan.units.map((u) => u.image);
    becomeSubreaper();
    for (const p of processes) forgetParkedStatus(p.pid);
    pausePoint("planned");
    if (early && !sameImages(early, imagesToVerify(plan))) {
      // The manifest the plan read lists other images or checksums than the early one: check
      // the plan's.
      verifier?.close();
      verifier = undefined;
    }
    verifier ??= byBlocks
      ? new LazyImageVerifier(plan.units, plan.manifest)
      : new ImageVerifier(verify ? imagesToVerify(plan) : []);
    const restored = await runPlanned(plan, opts, verifier, lazyServe, byBlocks, t0);
    liftNetworkLock(plan.manifest);
    return restored;
  } finally {
    // Nothing is left mapped or folding, whatever happened (idempotent after finish()).
    verifier?.close();
  }
}

/**
 * The tree runs with its connections to peers outside it: lift the lock the
 * dump left on them (engine/fds/tcp_lock.ts), so their segments reach the
 * restored sockets. A lock that cannot be removed stays (`cryo image unlock`
 * says why): the restore itself succeeded.
 */
function liftNetworkLock(manifest: Manifest): void {
  if (!manifest.dumpId || !manifest.optIns?.includes("tcp-established")) return;
  try {
    unlockConnections(manifest.dumpId);
  } catch { /* see above */ }
}

/** The part of {@link restore} that creates the tree, once `plan` is checked. */
async function runPlanned(
  plan: RestorePlan,
  opts: RestoreOptions,
  verifier: ImageVerifier | LazyImageVerifier,
  lazyServe: Promise<typeof import("../memory/lazy_serve.ts")> | undefined,
  byBlocks: boolean | undefined,
  t0: number,
): Promise<RestoredTree> {
  // The pre-flight once more, just before: the leftovers of the dumped tree are taken as they are now.
  const segments = plan.manifest.sysvShm ?? [];
  const shm = CreatedSysvShm.create(segments, plan.dir, checkSysvShmFree(segments));
  let cwds: DeletedCwds;
  try {
    cwds = DeletedCwds.create(plan.units.map((u) => u.image));
  } catch (e) {
    shm.discard();
    throw e;
  }
  let provided: ProvidedFds;
  try {
    provided = await ProvidedFds.open(plan.ptys, plan.ghosts, plan.dir, cwds.made);
  } catch (e) {
    cwds.finish();
    shm.discard();
    throw e;
  }
  const session = new RestoreSession(
    plan.units,
    opts.onEvent,
    undefined,
    provided,
    () => verifier.step(),
    opts.existingRoot,
    loginuidToWrite(plan.units.map((u) => u.image)),
  );
  try {
    session.prepare();
  } catch (e) {
    cwds.finish();
    shm.discard();
    // Every task it made is gone: a pid still used as a group or session id is why, if one is.
    if (!opts.existingRoot) checkGroupIdsFree(plan.units.map((u) => u.image));
    throw e;
  }
  let problem = verifier.finish();
  problem ??= shrunkImage(plan.dir, plan.manifest);
  // Every process has entered its cwd: a deleted one is deleted again before anything runs.
  cwds.finish();
  if (problem) {
    session.abort();
    shm.discard();
    throw problem;
  }
  // Lazy restore: cryo takes the userfaultfds while every task still waits (engine/memory/lazy_serve.ts).
  let lazy: LazyServer | undefined;
  try {
    lazy = lazyServe
      ? (await lazyServe).LazyServer.take(
        plan.units.map((u) => ({
          ...u,
          pid: u.image.pid,
          blocks: byBlocks ? pageBlocksOf(plan, u.image.pid) : undefined,
        })),
        opts.lazyEnsure,
      )
      : undefined;
  } catch (e) {
    session.abort();
    shm.discard();
    throw e;
  }
  pausePoint("finalize");
  // Every task has attached its segments: the removed ones are marked again before anything runs.
  shm.finish();
  let pids: number[];
  try {
    pids = session.release();
  } catch (e) {
    lazy?.abort();
    shm.discard();
    throw e;
  }
  pausePoint("released");
  const rootPid = plan.manifest.rootPid;
  let exited: Promise<ExitStatus> | undefined;
  return {
    rootPid,
    pids,
    seconds: (performance.now() - t0) / 1000,
    get exited() {
      exited ??= watchExit(rootPid);
      return exited;
    },
    kill(signal = 15) {
      rawSyscall(SYS.kill, rootPid, signal);
    },
    lazy,
  };
}
