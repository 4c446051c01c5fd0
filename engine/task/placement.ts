/**
 * Where a process lives in the system: its namespaces and its control
 * groups. A restored process is born in the restorer's namespaces and
 * cgroups, so the dump records both:
 *
 * - namespaces (mnt, pid, net, ipc, uts, user, cgroup, time): a process
 *   whose namespace differs from cryo's own is refused by name (the tree
 *   would come back in other namespaces than it had), and so is one whose
 *   children's pid or time namespace is not its own (an unshare waiting
 *   for its first child);
 * - cgroups (each line of /proc/<pid>/cgroup): at restore, before the tree
 *   runs, the engine moves every process whose cgroup differs from the
 *   recorded one back into it (cgroup.procs of that hierarchy), then each
 *   thread recorded in another cgroup than its process (a v1 hierarchy's
 *   `tasks`, a v2 threaded subtree's `cgroup.threads`); a cgroup that no
 *   longer exists makes the restore fail before anything is created.
 *
 * @module
 */

import { readProcLink, readProcText } from "../proc/io.ts";
import type { ProcessImage } from "../model.ts";
import { Refusals } from "../support.ts";
import { RestoreError } from "../errors.ts";
import { cstr, rawSyscall } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";

/** The namespaces compared with cryo's own. */
const NAMESPACES = ["mnt", "pid", "net", "ipc", "uts", "user", "cgroup", "time"] as const;

/** Reads of cryo's own namespace links made so far (tests). */
export const ownNamespaceStats = { reads: 0 };

/**
 * cryo's own namespace links (undefined: a kind this kernel does not have)
 * and whether the kernel has the `*_for_children` links, read once: cryo
 * never changes its namespaces, and a freeze need not read them again
 * (10 syscalls of threads-64's freeze).
 */
let ownNs: { links: Map<string, string | undefined>; forChildren: Set<string> } | undefined;

function ownNamespaces(): NonNullable<typeof ownNs> {
  if (ownNs) return ownNs;
  const links = new Map<string, string | undefined>();
  for (const ns of NAMESPACES) {
    ownNamespaceStats.reads++;
    try {
      links.set(ns, Deno.readLinkSync(`/proc/self/ns/${ns}`));
    } catch {
      links.set(ns, undefined);
    }
  }
  const forChildren = new Set<string>();
  for (const ns of ["pid", "time"]) {
    try {
      Deno.lstatSync(`/proc/self/ns/${ns}_for_children`);
      forChildren.add(ns);
    } catch { /* a kernel without it */ }
  }
  return ownNs = { links, forChildren };
}

/** Dump: refuses a process whose namespaces differ from cryo's. */
export function checkNamespaces(pid: number, refusals: Refusals): void {
  const mine = ownNamespaces();
  for (const ns of NAMESPACES) {
    let theirs: string;
    const ours = mine.links.get(ns);
    if (ours === undefined) continue; // a namespace kind this kernel does not have
    try {
      theirs = readProcLink(pid, `ns/${ns}`);
    } catch {
      continue; // (as above, or gone: the freeze finds out)
    }
    if (theirs !== ours) {
      refusals.use(
        "task.namespaces",
        `process ${pid}`,
        `its ${ns} namespace (${theirs}) is not cryo's (${ours})`,
      );
    }
  }
  // unshare(CLONE_NEWPID / CLONE_NEWTIME) moves only the children to come: a restored process
  // would fork them into its own namespace instead.
  for (const ns of ["pid", "time"] as const) {
    let theirs: string;
    let children: string;
    if (!mine.forChildren.has(ns)) continue; // a kernel without it
    try {
      theirs = readProcLink(pid, `ns/${ns}`);
    } catch {
      continue;
    }
    try {
      children = readProcLink(pid, `ns/${ns}_for_children`);
    } catch {
      // A pid namespace whose init is not forked yet cannot be opened (no child reaper).
      children = "a new namespace";
    }
    if (theirs !== children) {
      refusals.use(
        "task.namespaces",
        `process ${pid}`,
        `its children's ${ns} namespace (${children}, unshared for the children it forks next) ` +
          `is not its own (${theirs})`,
      );
    }
  }
}

/** Dump: the cgroup lines of a process ("<id>:<controllers>:<path>"). */
export function collectCgroups(pid: number): string[] {
  return readProcText(pid, "cgroup").split("\n").filter((l) => l !== "");
}

/** Buffer of the per-thread cgroup reads (a /proc/<pid>/task/<tid>/cgroup is a few lines). */
const threadCgroupBuf = new Uint8Array(16384);
const O_RDONLY_CLOEXEC = 0o2000000;

/**
 * Dump: the threads of process `pid` (`tids`, its own included) whose
 * cgroup lines differ from the process's `lines`, with the lines that
 * differ. One raw open, read and close per other thread (threads-64: 63
 * files; no text is decoded unless its bytes differ from the process's).
 */
export function collectThreadCgroups(
  pid: number,
  tids: readonly number[],
  lines: readonly string[],
): { tid: number; cgroups: string[] }[] {
  const out: { tid: number; cgroups: string[] }[] = [];
  if (tids.length < 2) return out;
  const ownText = lines.map((l) => `${l}\n`).join("");
  const own = new TextEncoder().encode(ownText);
  const ownSet = new Set(lines);
  const buf = threadCgroupBuf;
  for (const tid of tids) {
    if (tid === pid) continue;
    const fd = Number(
      rawSyscall(SYS.open, cstr(`/proc/${pid}/task/${tid}/cgroup`), O_RDONLY_CLOEXEC),
    );
    if (fd < 0) continue; // exited while frozen: not restored either
    let n: number;
    try {
      n = Number(rawSyscall(SYS.read, fd, buf, buf.length));
    } finally {
      rawSyscall(SYS.close, fd);
    }
    if (n < 0) continue;
    if (n === own.length && n < buf.length && sameBytes(buf, own)) continue;
    // Differs (or did not fit: read again whole).
    const theirs = (n < buf.length
      ? new TextDecoder().decode(buf.subarray(0, n))
      : readProcText(pid, `task/${tid}/cgroup`)).split("\n").filter((l) =>
        l !== ""
      );
    const differ = theirs.filter((l) => !ownSet.has(l));
    if (differ.length) out.push({ tid, cgroups: differ });
  }
  return out;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Dump: throws (one line, `task.frozen-cgroup`) when process `pid`, whose
 * cgroup lines are `lines`, sits in a frozen cgroup: a v2 cgroup frozen
 * (cgroup.freeze, or frozen through an ancestor: cgroup.events) or a v1
 * freezer cgroup not THAWED. Its threads take the freeze's ptrace stops,
 * but every injected syscall would wait for the thaw. Called frozen,
 * before any injection; only lines that differ from cryo's own are looked
 * at (cryo runs, so its cgroups are not frozen).
 */
export function refuseFrozenCgroup(pid: number, lines: readonly string[]): void {
  const ours = new Set(collectCgroups(Deno.pid));
  let mounts: Map<string, string> | undefined;
  for (const line of lines) {
    if (ours.has(line)) continue;
    const m = line.match(/^(\d+):([^:]*):(.*)$/);
    if (!m) continue;
    const names = m[2].split(",").filter((c) => c !== "");
    if (names.length > 0 && !names.includes("freezer")) continue;
    mounts ??= cgroupMounts();
    const root = mounts.get([...names].sort().join(","));
    if (root === undefined) continue;
    const dir = m[3] === "/" ? root : `${root}${m[3]}`;
    let frozen = false;
    try {
      frozen = names.length === 0
        ? Deno.readTextFileSync(`${dir}/cgroup.freeze`).trim() === "1" ||
          /^frozen 1$/m.test(Deno.readTextFileSync(`${dir}/cgroup.events`))
        : Deno.readTextFileSync(`${dir}/freezer.state`).trim() !== "THAWED";
    } catch { /* the root cgroup (no such file), or gone */ }
    if (!frozen) continue;
    const refusals = new Refusals();
    refusals.use("task.frozen-cgroup", `process ${pid}`, `its cgroup ${dir} is frozen`);
    refusals.throwIfAny("the tree cannot be checkpointed");
  }
}

/** Mount points of the cgroup hierarchies of this host, by "<controllers>" ("" for v2). */
function cgroupMounts(): Map<string, string> {
  // v1 hierarchies are named by their controllers (and "name=..." for named ones).
  const controllers = new Set(
    Deno.readTextFileSync("/proc/cgroups").split("\n").filter((l) => l && !l.startsWith("#"))
      .map((l) => l.split("\t")[0]),
  );
  const out = new Map<string, string>();
  for (const line of Deno.readTextFileSync("/proc/self/mountinfo").split("\n")) {
    const [left, right] = line.split(" - ");
    if (!right) continue;
    const [fstype, , superOpts = ""] = right.split(" ");
    const mountPoint = left.split(" ")[4];
    let key: string | undefined;
    if (fstype === "cgroup2") key = "";
    else if (fstype === "cgroup") {
      key = superOpts.split(",").filter((o) => controllers.has(o) || o.startsWith("name="))
        .sort().join(",");
    }
    if (key !== undefined && !out.has(key)) out.set(key, mountPoint);
  }
  return out;
}

/**
 * Where process `pid`'s cgroup of `controller` is: the directory of the v1
 * hierarchy holding that controller when one is mounted, else of its v2
 * cgroup (`root`: the hierarchy's mount point, which `dir` is under);
 * undefined when neither is mounted.
 */
export function cgroupDirOf(
  pid: number,
  controller: string,
): { dir: string; root: string; v1: boolean } | undefined {
  const mounts = cgroupMounts();
  let v2: { dir: string; root: string; v1: boolean } | undefined;
  for (const line of collectCgroups(pid)) {
    const m = line.match(/^(\d+):([^:]*):(.*)$/);
    if (!m) continue;
    const names = m[2].split(",").filter((c) => c !== "");
    const root = mounts.get([...names].sort().join(","));
    if (root === undefined) continue;
    const dir = m[3] === "/" ? root : `${root}${m[3]}`;
    if (names.includes(controller)) return { dir, root, v1: true };
    if (names.length === 0) v2 = { dir, root, v1: false };
  }
  return v2;
}

/**
 * The file that moves a process (cgroup.procs) or, with `thread`, one
 * thread (v1: tasks; v2: cgroup.threads) into the cgroup of one
 * /proc/<pid>/cgroup line; null when that hierarchy is not mounted.
 */
function procsFile(line: string, mounts: Map<string, string>, thread = false): string | null {
  const m = line.match(/^(\d+):([^:]*):(.*)$/);
  if (!m) return null;
  const key = m[2].split(",").filter((c) => c !== "").sort().join(",");
  const mount = mounts.get(key);
  const file = !thread ? "cgroup.procs" : key === "" ? "cgroup.threads" : "tasks";
  return mount === undefined ? null : `${mount}${m[3] === "/" ? "" : m[3]}/${file}`;
}

/** The hierarchy of a /proc/<pid>/cgroup line: its controllers and name, sorted ("" for v2). */
function hierarchyOf(line: string): string | undefined {
  const m = line.match(/^\d+:([^:]*):/);
  return m ? m[1].split(",").filter((c) => c !== "").sort().join(",") : undefined;
}

/**
 * Whether `line` names the root of a hierarchy that no longer exists here
 * (none of the lines `now`, a live process's, is of it): a v1 hierarchy
 * mounted at dump and gone since. Nothing is to be restored: every process
 * is in the root of a hierarchy when it is made.
 */
export function rootOfGoneHierarchy(line: string, now: readonly string[]): boolean {
  if (!line.endsWith(":/")) return false;
  const h = hierarchyOf(line);
  return h !== undefined && !now.some((l) => hierarchyOf(l) === h);
}

/** Restore pre-flight: every recorded cgroup that differs from cryo's must exist. */
export function checkCgroups(processes: readonly ProcessImage[]): void {
  // The mount table only when a cgroup differs from cryo's (the usual restore needs none).
  let mounts: Map<string, string> | undefined;
  const oursLines = collectCgroups(Deno.pid);
  const ours = new Set(oursLines);
  for (const p of processes) {
    const lines = [...p.cgroups ?? [], ...(p.threadCgroups ?? []).flatMap((t) => t.cgroups)];
    for (const line of lines) {
      if (ours.has(line) || rootOfGoneHierarchy(line, oursLines)) continue;
      mounts ??= cgroupMounts();
      const file = procsFile(line, mounts);
      if (file === null) {
        throw new RestoreError(
          `cannot restore: process ${p.pid} was in cgroup ${line}, whose hierarchy is not mounted here`,
        );
      }
      try {
        Deno.statSync(file);
      } catch {
        throw new RestoreError(
          `cannot restore: process ${p.pid} was in cgroup ${line}, which does not exist here`,
        );
      }
      // Opening moves nothing; a rootless restorer usually may not write there.
      try {
        Deno.openSync(file, { write: true }).close();
      } catch (e) {
        if (!(e instanceof Deno.errors.PermissionDenied)) throw e;
        throw new RestoreError(
          `cannot restore: process ${p.pid} was in cgroup ${line}, which this user may not move processes into (${file} is not writable)`,
        );
      }
    }
  }
}

/**
 * Restore (engine, before the tree runs, its threads made): moves process
 * `image.pid` into each recorded cgroup it is not in, then each thread
 * recorded elsewhere into its own.
 */
export function restoreCgroups(image: ProcessImage): void {
  if (!image.cgroups) return;
  const nowLines = collectCgroups(image.pid);
  const now = new Set(nowLines);
  let mounts: Map<string, string> | undefined; // read only when a cgroup differs
  const move = (id: number, line: string, thread: boolean) => {
    mounts ??= cgroupMounts();
    const file = procsFile(line, mounts, thread);
    try {
      if (file === null) throw new Error("hierarchy not mounted");
      Deno.writeTextFileSync(file, `${id}\n`, { append: true });
    } catch (e) {
      throw new RestoreError(
        `restore of process ${image.pid} failed: cannot move ${
          thread ? `its thread ${id}` : "it"
        } into cgroup ${line}: ${(e as Error).message}`,
      );
    }
  };
  const gone = (line: string) => rootOfGoneHierarchy(line, nowLines);
  for (const line of image.cgroups) if (!now.has(line) && !gone(line)) move(image.pid, line, false);
  for (const t of image.threadCgroups ?? []) {
    for (const line of t.cgroups) if (!gone(line)) move(t.tid, line, true);
  }
}
