/**
 * NUMA memory policies (set_mempolicy(2), mbind(2)): each thread's task
 * policy (task->mempolicy) and each mapping's own policy (vma->vm_policy).
 *
 * A policy is recorded as get_mempolicy(2) reports it: `mode` is the mode
 * with its mode flags (MPOL_F_STATIC_NODES, MPOL_F_RELATIVE_NODES,
 * MPOL_F_NUMA_BALANCING) or'ed in, `nodes` the node numbers of its mask (for
 * the static and relative flags the mask the program gave, else the nodes
 * in effect). That is what set_mempolicy and mbind take back. A thread or
 * mapping without a policy of its own (MPOL_DEFAULT) records none.
 *
 * Dump: a thread's policy is only visible to get_mempolicy run by that
 * thread: an injected call per thread (engine/dump/injected.ts), or, on the
 * BPF task iterator's path, the task->mempolicy pointer tells which threads
 * have none (engine/dump/thread_state.ts); only those with one are injected.
 * A mapping's is read by injected get_mempolicy(MPOL_F_ADDR) calls in the
 * main thread ({@link queryMappingPolicies}): one batch for every mapping's
 * mode, then one call each for the masks of the few with a policy.
 *
 * Restore: the restore program sets each thread's policy in that thread
 * (the main thread's before its mappings are filled, so its pages land as
 * the policy says), and mbinds each mapping right after it is mapped,
 * before its pages are written. A policy naming a node this host does not
 * have online is refused before anything is made ({@link checkPolicyNodes}).
 *
 * Shared memory (shmem, System V) keeps its policy on the memory object,
 * not on the mapping: a shared mapping with a policy is refused at dump
 * (memory.mempolicy-shared).
 *
 * @module
 */

import { cpusOfMask } from "../../ffi/sched.ts";
import { RestoreError } from "../errors.ts";
import { parseCpuList } from "../task/sched.ts";
import type { Mapping, ProcessImage } from "../model.ts";
import type { ArgInput, ProgramBuilder } from "../program/builder.ts";

/** One memory policy as get_mempolicy(2) reports it. */
export interface MemPolicy {
  /** The mode (MPOL_*) with its mode flags or'ed in. */
  mode: number;
  /** The node numbers of its node mask, ascending. */
  nodes: number[];
}

/** MPOL_DEFAULT: no policy of its own. */
export const MPOL_DEFAULT = 0;
/** get_mempolicy's flag: the policy of the mapping at `addr`. */
export const MPOL_F_ADDR = 1 << 1;
/** Bits of nodes a mask holds here: MAX_NUMNODES at most (x86-64: NODES_SHIFT up to 10). */
export const MAX_NODES = 1024;
/** Bytes of a node mask of {@link MAX_NODES} bits. */
export const MASK_BYTES = MAX_NODES / 8;

const MODE_NAMES = [
  "default",
  "preferred",
  "bind",
  "interleave",
  "local",
  "preferred-many",
  "weighted-interleave",
];
const MODE_FLAGS: [number, string][] = [
  [1 << 15, "static"],
  [1 << 14, "relative"],
  [1 << 13, "balancing"],
];

/** A policy as one line's words, e.g. "bind(static) nodes 0,1". */
export function describePolicy(p: MemPolicy): string {
  const base = p.mode & 0xff;
  const flags = MODE_FLAGS.filter(([bit]) => (p.mode & bit) !== 0).map(([, n]) => n);
  const name = `${MODE_NAMES[base] ?? `mode ${base}`}${flags.length ? `(${flags.join(",")})` : ""}`;
  return p.nodes.length ? `${name} nodes ${p.nodes.join(",")}` : name;
}

/** The node numbers set in `mask` (little-endian words, as the kernel writes them). */
export function nodesOfMask(mask: Uint8Array): number[] {
  return cpusOfMask(mask, mask.length); // the same bitmap layout as a CPU mask
}

/** The node mask of `nodes`, {@link MASK_BYTES} bytes. Throws for a node beyond {@link MAX_NODES}. */
export function maskOfNodes(nodes: readonly number[]): Uint8Array<ArrayBuffer> {
  const mask = new Uint8Array(MASK_BYTES);
  for (const n of nodes) {
    if (!Number.isInteger(n) || n < 0 || n >= MAX_NODES) throw new RangeError(`node ${n}`);
    mask[n >> 3] |= 1 << (n & 7);
  }
  return mask;
}

/** The policy get_mempolicy wrote (`mode` and the mask's bytes); undefined for MPOL_DEFAULT. */
export function policyOf(mode: number, mask: Uint8Array): MemPolicy | undefined {
  return mode === MPOL_DEFAULT ? undefined : { mode, nodes: nodesOfMask(mask) };
}

/** The nodes online on this host (node 0 alone when the kernel has no NUMA sysfs). */
export function onlineNodes(): Set<number> {
  try {
    // The same list format as the CPUs' ("0-3,5").
    return parseCpuList(Deno.readTextFileSync("/sys/devices/system/node/online"));
  } catch {
    return new Set([0]);
  }
}

/** Every policy of `proc` with where it applies (threads first, then mappings). */
export function policiesOf(
  proc: Pick<ProcessImage, "pid" | "threads" | "mappings">,
): { where: string; policy: MemPolicy }[] {
  const out: { where: string; policy: MemPolicy }[] = [];
  for (const t of proc.threads) {
    if (t.mempolicy) out.push({ where: `thread ${t.tid}`, policy: t.mempolicy });
  }
  // By forEach: no loop of 10,000 rounds for V8 to compile (engine/find_from.ts; this one was
  // the only loop a maps-10000 restore had V8 compile on-stack, twice: docs/PERFORMANCE.md,
  // sixteenth pass, restsmall).
  (proc.mappings as readonly Mapping[]).forEach((m) => {
    if (m.mempolicy) out.push({ where: `mapping ${m.start}-${m.end}`, policy: m.mempolicy });
  });
  return out;
}

/**
 * Refuses, in one line, a restore of `proc` whose policies name a node that
 * is not online on this host (`online`: {@link onlineNodes}): the kernel
 * would refuse the policy, or (static nodes) keep one that places nothing.
 */
export function checkPolicyNodes(
  proc: Pick<ProcessImage, "pid" | "threads" | "mappings">,
  online?: ReadonlySet<number>,
): void {
  const policies = policiesOf(proc);
  if (!policies.length) return; // no policy: the host's nodes are not read
  const nodes = online ?? onlineNodes();
  for (const { where, policy } of policies) {
    const missing = policy.nodes.filter((n) => !nodes.has(n));
    if (missing.length) {
      throw new RestoreError(
        `cannot restore the NUMA memory policy of process ${proc.pid} ${where} (${
          describePolicy(policy)
        }): node ${missing.join(",")} is not online on this host (online: ${
          [...nodes].sort((a, b) => a - b).join(",") || "none"
        })`,
      );
    }
  }
}

/** What {@link queryMappingPolicies} needs of an injection session (engine/dump/injected.ts). */
export interface PolicyQuerySession {
  /** The process (its main thread runs the calls). */
  pid: number;
  /** Runs `steps` in thread `tid` (one batch); their results. */
  calls(
    tid: number,
    steps: readonly { nr: number; args: readonly (number | bigint)[] }[],
  ): bigint[];
  /** Reads `length` bytes of the scratch page from `offset`. */
  read(offset: number, length: number): Uint8Array;
  /** The scratch page's address in the target. */
  scratch: bigint;
}

/** Mappings whose modes one batch reads (4 bytes each in the scratch page; 64 bytes of table each on the stack). */
const MODE_BATCH = 256;
const SYS_GET_MEMPOLICY = 239;
const EFAULT = -14n;
const ENOSYS = -38n;

/** One injected call (ffi/syscall_batch.ts BatchStep). */
type Step = { nr: number; args: readonly (number | bigint)[] };

/** The mapping policies to read in one process, planned before its injected calls. */
export interface MappingPolicyQuery {
  /** The indexes (in the area list) of the areas asked, in order. */
  index: number[];
  /** Their start addresses. */
  starts: bigint[];
  /**
   * The mode reads of the first of them (at most the planned capacity),
   * their results at the planned scratch offset, 4 bytes each: they go in
   * the main thread's first batch (engine/dump/injected.ts
   * `queryInjectedState`), no round trip of their own.
   */
  first: Step[];
  /** The scratch offset of the first reads' results. */
  at: number;
}

/** get_mempolicy(&mode at `out`, no mask, of the area at `addr`). */
function modeStep(out: bigint, addr: bigint): Step {
  return { nr: SYS_GET_MEMPOLICY, args: [out, 0, 0, addr, MPOL_F_ADDR] };
}

/**
 * Plans the reads of the NUMA policies of `all` (their start addresses):
 * only those starting in `only` when given (the BPF iterator's vm_policy
 * not NULL), else every one; the first `capacity` mode reads write at
 * scratch offset `at` of the page at `scratch`.
 */
export function planMappingPolicies(
  all: readonly { start: bigint }[],
  only: ReadonlySet<bigint> | undefined,
  scratch: bigint,
  at: number,
  capacity: number,
): MappingPolicyQuery {
  const index: number[] = [], starts: bigint[] = [];
  if (only?.size !== 0) {
    all.forEach((a, i) => {
      if (!only || only.has(a.start)) {
        index.push(i);
        starts.push(a.start);
      }
    });
  }
  const first = starts.slice(0, capacity).map((addr, k) =>
    modeStep(scratch + BigInt(at + 4 * k), addr)
  );
  return { index, starts, first, at };
}

/**
 * The NUMA policy of each area of `q` in the frozen process of `s`, by
 * index in the area list (only those with one): the modes of the first
 * areas from `firstResults` (their calls ran in the main thread's first
 * batch; undefined: they did not, and run now), the others' read by
 * get_mempolicy(MPOL_F_ADDR) in batches of {@link MODE_BATCH}, then the node
 * mask of each area whose mode is not MPOL_DEFAULT. An area the kernel finds
 * no mapping at (the vsyscall page) has none. Throws naming the area when
 * the call fails otherwise.
 */
export function finishMappingPolicies(
  s: PolicyQuerySession,
  q: MappingPolicyQuery,
  firstResults: readonly bigint[] | undefined,
): Map<number, MemPolicy> {
  const out = new Map<number, MemPolicy>();
  const areas = q.starts;
  if (areas.length === 0) return out;
  const fail = (i: number, r: bigint): never => {
    throw new Error(
      `process ${s.pid}: get_mempolicy of mapping 0x${areas[i].toString(16)} failed: errno ${-r}`,
    );
  };
  const withPolicy: number[] = [];
  /** Takes the results `r` of the mode reads of areas from `from` on, written at scratch offset `at`. */
  const take = (from: number, r: readonly bigint[], at: number): boolean => {
    if (r[0] === ENOSYS) return false; // no NUMA in this kernel: no policy anywhere
    const modes = s.read(at, 4 * r.length);
    const dv = new DataView(modes.buffer, modes.byteOffset, modes.byteLength);
    for (let k = 0; k < r.length; k++) {
      if (r[k] === EFAULT) continue;
      if (r[k] < 0n) fail(from + k, r[k]);
      if (dv.getInt32(4 * k, true) !== MPOL_DEFAULT) withPolicy.push(from + k);
    }
    return true;
  };
  let from = 0;
  if (firstResults && firstResults.length === q.first.length) {
    if (!take(0, firstResults, q.at)) return out;
    from = q.first.length;
  }
  for (; from < areas.length; from += MODE_BATCH) {
    const n = Math.min(MODE_BATCH, areas.length - from);
    const steps = new Array<Step>(n);
    for (let k = 0; k < n; k++) steps[k] = modeStep(s.scratch + BigInt(4 * k), areas[from + k]);
    if (!take(from, s.calls(s.pid, steps), 0)) return out;
  }
  for (const i of withPolicy) {
    const [r] = s.calls(s.pid, [{
      nr: SYS_GET_MEMPOLICY,
      args: [s.scratch, s.scratch + 8n, MAX_NODES, areas[i], MPOL_F_ADDR],
    }]);
    if (r < 0n) fail(i, r);
    const got = s.read(0, 8 + MASK_BYTES);
    const p = policyOf(new DataView(got.buffer, got.byteOffset).getInt32(0, true), got.subarray(8));
    if (p) out.set(q.index[i], p);
  }
  return out;
}

/**
 * {@link planMappingPolicies} and {@link finishMappingPolicies} at once,
 * every read in batches of its own.
 */
export function queryMappingPolicies(
  s: PolicyQuerySession,
  all: readonly { start: bigint }[],
  only?: ReadonlySet<bigint>,
): Map<number, MemPolicy> {
  return finishMappingPolicies(s, planMappingPolicies(all, only, s.scratch, 0, 0), undefined);
}

/**
 * Puts each policy of `found` (by index, {@link queryMappingPolicies}) on
 * its mapping of `mappings` (private ones); a shared mapping's (shmem,
 * System V, a shared file mapping) is refused (memory.mempolicy-shared): it
 * lives on the memory object, which other holders share. So is one on a
 * mapping the kernel makes itself (vdso, an AIO ring).
 */
export function recordMappingPolicies(
  pid: number,
  mappings: Mapping[],
  found: ReadonlyMap<number, MemPolicy>,
  refusals: { use(id: "memory.mempolicy-shared", where: string, detail?: string): unknown },
): void {
  for (const [i, policy] of found) {
    const m = mappings[i];
    if (m.kind === "anon" || m.kind === "file-private") {
      m.mempolicy = policy;
      continue;
    }
    refusals.use(
      "memory.mempolicy-shared",
      `process ${pid} mapping ${m.start}-${m.end} (${m.name || "anonymous"})`,
      `NUMA policy ${describePolicy(policy)} on a mapping of kind ${m.kind}`,
    );
  }
}

type PolicyProgram = ProgramBuilder;

const SYS_MBIND = 237;
const SYS_SET_MEMPOLICY = 238;

/**
 * The mask argument and maxnode of a policy's call: set_mempolicy and mbind
 * read one bit less than maxnode says (mm/mempolicy.c get_nodes), hence +1.
 * A default policy (undefined) takes none.
 */
function maskArgs(p: PolicyProgram, policy: MemPolicy | undefined): [number, bigint | 0, number] {
  if (!policy) return [MPOL_DEFAULT, 0, 0];
  return [policy.mode, policy.nodes.length ? p.data(maskOfNodes(policy.nodes)) : 0, MAX_NODES + 1];
}

/**
 * Emits set_mempolicy(2) for the thread running the op: `policy`, or the
 * default (allowed to fail then: a kernel without NUMA has no call, and
 * nothing else to be).
 */
export function emitSetMempolicy(
  p: PolicyProgram,
  policy: MemPolicy | undefined,
  comment: string,
): void {
  const [mode, mask, maxnode] = maskArgs(p, policy);
  p.op(SYS_SET_MEMPOLICY, [mode, mask, maxnode], {
    comment: `${comment}: NUMA policy ${policy ? describePolicy(policy) : "default"}`,
    ...(policy ? {} : { allowFail: true }),
  });
}

/** Emits mbind(2) of `[start, start + len)` to `policy` (the default when undefined). */
export function emitMbind(
  p: PolicyProgram,
  start: ArgInput,
  len: ArgInput,
  policy: MemPolicy | undefined,
  comment: string,
): void {
  const [mode, mask, maxnode] = maskArgs(p, policy);
  p.op(SYS_MBIND, [start, len, mode, mask, maxnode, 0], {
    comment: `${comment}: NUMA policy ${policy ? describePolicy(policy) : "default"}`,
    ...(policy ? {} : { allowFail: true }),
  });
}

/** Whether two policies (undefined: the default) are the same. */
export function samePolicy(a: MemPolicy | undefined, b: MemPolicy | undefined): boolean {
  if (!a || !b) return a === b;
  return a.mode === b.mode && a.nodes.length === b.nodes.length &&
    a.nodes.every((n, i) => n === b.nodes[i]);
}
