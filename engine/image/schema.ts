/**
 * The shape of what an image holds, as zod schemas: the manifest and the
 * process description (NT_CRYO_PROCESS). Everything restore reads must
 * have the type the model says before any of it is used; a damaged or
 * hostile image is refused with one line naming the field. Objects are
 * loose (fields this cryo does not know are kept), so records that resource
 * kinds add stay readable; each kind checks its own record where it plans.
 * The large schemas are built at their first check (`z.lazy`): a dump,
 * which checks none, does not build them at every start.
 *
 * @module
 */

import * as z from "./shape.ts";
import { MAPPING_KINDS, plainMappingFits } from "./mapping_fast.ts";
import { plainThreadFits } from "./thread_fast.ts";

/** A 64-bit value as a 0x-prefixed hex string. */
const hex = z.string().regex(/^0x[0-9a-fA-F]{1,16}$/, "expected a 0x-prefixed 64-bit hex value");
const int = z.number().int();
const nat = int.nonnegative();
/** A uid or gid (32 bits; 4294967295 is "none" and cannot be set). */
const id32 = nat.max(0xfffffffe);
const base64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, "expected base64");

const fileIdentity = z.looseObject({
  path: z.string(),
  dev: nat,
  ino: nat,
  size: nat,
  mtimeMs: z.number(),
  ctimeNs: z.string().regex(/^\d+$/).optional(),
  rdev: nat.optional(),
});

/** A NUMA memory policy (engine/memory/mempolicy.ts): mode with flags, nodes below 1024. */
const mempolicy = z.looseObject({ mode: int.min(1), nodes: z.array(nat.max(1023)) });

const sigInfo = z.looseObject({ signo: int.min(1).max(64), code: int, raw: base64 });

/** The checks of a mapping record (without the fast path: tests compare the two). */
export const mappingChecks = z.lazy(() =>
  z.looseObject({
    start: hex,
    end: hex,
    perms: z.string().regex(/^[r-][w-][x-][ps]$/),
    offset: hex,
    kind: z.enum(MAPPING_KINDS),
    name: z.string(),
    file: fileIdentity.optional(),
    vmFlags: z.array(z.string()),
    pages: z.array(z.looseObject({ addr: hex, length: nat, fileOffset: nat })),
    excluded: z.boolean().optional(),
    ghost: z.string().optional(),
    sysvShm: nat.optional(),
    mempolicy: mempolicy.optional(),
    shmemSize: int.min(1).optional(),
    shmemJoin: z.literal(true).optional(),
    hugePageSize: int.min(8192).optional(),
    shmemObject: z.looseObject({
      id: nat,
      size: int.min(1),
      forChildren: z.literal(true).optional(),
      inParent: z.literal(true).optional(),
    }).optional(),
    aio: z.looseObject({
      id: nat,
      nr: nat,
      nrEvents: nat,
      head: nat,
      tail: nat,
      ring: base64,
    }).optional(),
  })
);
/** A mapping record; its common form is checked by a fast path (engine/image/mapping_fast.ts). */
const mapping = mappingChecks.fastPath(plainMappingFits);
/**
 * NT_CRYO_PROCESS's `mappings` when the common records are in the
 * NT_CRYO_MAPPINGS note (engine/image/mapping_note.ts, whose
 * `MAPPINGS_IN_NOTE` is the literal): the records kept whole, in order.
 * Checked as the field of an object, for the paths of its problems.
 */
export const mappingsInNoteSchema = z.lazy(() =>
  z.looseObject({
    mappings: z.looseObject({
      columns: z.literal("NT_CRYO_MAPPINGS"),
      whole: z.array(mapping),
    }),
  })
);

/** The checks of a thread record (without the fast path: tests compare the two). */
export const threadChecks = z.lazy(() =>
  z.looseObject({
    tid: int,
    comm: z.string(),
    regs: z.record(z.string(), hex),
    // Absent: in the thread's NT_X86_XSTATE note (engine/image/thread_xsave.ts).
    xsave: base64.optional(),
    sigmask: hex,
    pending: z.array(sigInfo),
    sigaltstack: z.looseObject({ sp: hex, flags: int, size: nat }),
    rseq: z.looseObject({ addr: hex, len: nat, sig: hex, flags: int }).nullable(),
    robustList: z.looseObject({ head: hex, len: nat }),
    clearChildTid: hex,
    syscall: z.looseObject({ nr: int, restart: z.enum(["none", "restart", "eintr"]) }),
    sched: z.looseObject({
      policy: int,
      flags: int,
      priority: int,
      nice: int,
      runtime: z.string(),
      deadline: z.string(),
      period: z.string(),
      utilMin: int,
      utilMax: int,
      cpus: z.array(nat),
      timerSlackNs: z.number(),
      ioprio: int,
    }).optional(),
    mempolicy: mempolicy.optional(),
    creds: z.looseObject({
      uid: z.array(id32).length(4),
      gid: z.array(id32).length(4),
      groups: z.array(id32).max(65536),
      capInh: hex,
      capPrm: hex,
      capEff: hex,
      capBnd: hex,
      capAmb: hex,
      securebits: nat,
      keepCaps: z.boolean(),
      noNewPrivs: z.boolean(),
    }).optional(),
  })
);
/** A thread record; its common form is checked by a fast path (engine/image/thread_fast.ts). */
const thread = threadChecks.fastPath(plainThreadFits);

const fd = z.lazy(() =>
  z.looseObject({
    fd: int,
    kind: z.string(),
    target: z.string(),
    flags: nat,
    cloexec: z.boolean(),
    pos: nat,
    mntId: nat,
    file: fileIdentity.optional(),
    extra: z.record(z.string(), z.string()),
    restore: z.string(),
    sameAs: int.optional(),
    excluded: z.boolean().optional(),
    ghost: z.string().optional(),
    description: z.string().optional(),
    owner: z.looseObject({ type: z.number().int().min(0).max(2), pid: int, sig: nat }).optional(),
  })
);

const limit = z.union([nat, z.literal("inf")]);
const itimer = z.looseObject({ intervalUs: nat, valueUs: nat });

/** NT_CRYO_PROCESS: one process description. */
export const processImageSchema = z.lazy(() =>
  z.looseObject({
    pid: int,
    ppid: int,
    pgid: int,
    sid: int,
    comm: z.string(),
    exe: fileIdentity.nullable(),
    cwd: z.string(),
    root: z.string(),
    dirIds: z.looseObject({
      cwd: z.looseObject({ dev: nat, ino: nat }),
      root: z.looseObject({ dev: nat, ino: nat }),
    }).optional(),
    cwdAttrs: z.looseObject({
      mode: nat,
      uid: nat,
      gid: nat,
      atime: z.tuple([int, nat]).optional(),
      mtime: z.tuple([int, nat]).optional(),
    }).optional(),
    umask: nat,
    personality: nat,
    cmdline: z.array(z.string()),
    creds: z.looseObject({
      uid: z.array(nat).length(4),
      gid: z.array(nat).length(4),
      groups: z.array(nat),
    }),
    mm: z.looseObject({
      startCode: hex,
      endCode: hex,
      startData: hex,
      endData: hex,
      startBrk: hex,
      brk: hex,
      startStack: hex,
      argStart: hex,
      argEnd: hex,
      envStart: hex,
      envEnd: hex,
    }),
    auxv: z.array(z.tuple([nat, hex])),
    rlimits: z.array(z.looseObject({ resource: int, name: z.string(), soft: limit, hard: limit })),
    mappings: z.array(mapping),
    threads: z.array(thread).min(1),
    sigactions: z.array(z.looseObject({ handler: hex, flags: hex, restorer: hex, mask: hex })),
    sharedPending: z.array(sigInfo),
    itimers: z.looseObject({ real: itimer, virtual: itimer, prof: itimer }),
    fds: z.array(fd),
    children: z.array(int),
    bootstrap: z.looseObject({ start: hex, size: nat }),
    dumpId: z.string().optional(),
    excluded: z.array(z.looseObject({ what: z.string(), reason: z.string() })),
    ctty: z.looseObject({ ttyNr: int, fgPgrp: int }).optional(),
    cgroups: z.array(z.string()).optional(),
    threadCgroups: z.array(z.looseObject({ tid: int, cgroups: z.array(z.string()) })).optional(),
    zombies: z.array(z.looseObject({
      pid: int.min(2),
      pgid: nat,
      sid: nat,
      comm: z.string(),
      waitStatus: int.min(0).max(0xffff),
      exitSignal: int.min(0).max(64),
      creds: z.looseObject({
        uid: z.array(nat).length(4),
        gid: z.array(nat).length(4),
        groups: z.array(nat).max(65536),
      }).optional(),
    })).optional(),
    stopped: z.looseObject({
      signal: z.union([z.literal(19), z.literal(20), z.literal(21), z.literal(22)]),
      reported: z.boolean(),
    }).optional(),
    continuedChildren: z.array(int.min(2)).optional(),
  })
);

const ghost = z.lazy(() =>
  z.looseObject({
    id: z.string(),
    kind: z.enum(["memfd", "deleted", "linked", "dir", "symlink"]),
    linkTarget: z.string().optional(),
    name: z.string(),
    handle: z.looseObject({ type: int, hex: z.string(), mount: z.string() }).optional(),
    size: nat,
    mode: nat,
    uid: nat,
    gid: nat,
    seals: nat,
    writeHint: nat.optional(),
    times: z.looseObject({
      atime: z.tuple([int, nat]),
      mtime: z.tuple([int, nat]),
    }).optional(),
    extents: z.array(z.tuple([nat, nat])),
    unwritten: z.array(z.tuple([nat, nat])).optional(),
    hugePageSize: int.min(8192).optional(),
    file: z.string(),
    checksum: z.string(),
  })
);

/** manifest.json. */
export const manifestSchema = z.lazy(() =>
  z.looseObject({
    kind: z.literal("cryo-image"),
    formatVersion: int,
    toolVersion: z.string(),
    createdAt: z.string(),
    dumpId: z.string().optional(),
    host: z.looseObject({
      kernelRelease: z.string(),
      hostname: z.string(),
      vdso: z.array(z.looseObject({ name: z.string(), size: nat })),
      vdsoSha256: z.string(),
      xfeatures: hex,
      xsaveSize: nat,
      pageSize: nat,
      clocks: z.looseObject({ monotonicNs: z.string(), boottimeNs: z.string() }).optional(),
    }),
    rootPid: int,
    processes: z.array(z.looseObject({
      pid: int,
      ppid: int,
      file: z.string().regex(/^[^/\0]+$/).refine((f) => f !== "." && f !== "..", "not a file name"),
      size: nat,
      checksum: z.string(),
      threads: z.array(int),
      comm: z.string(),
      pageBlocks: z.looseObject({ offset: nat, length: nat, size: nat, crcs: z.string() })
        .optional(),
    })).min(1),
    stats: z.looseObject({}),
    optIns: z.array(z.string()).optional(),
    ghosts: z.array(ghost).optional(),
    pidNamespace: z.literal("own").optional(),
    namespaces: z.looseObject({}).optional(),
    sysvShm: z.array(z.looseObject({
      shmid: nat,
      key: int,
      size: nat,
      mode: nat,
      uid: nat,
      gid: nat,
      cuid: nat,
      cgid: nat,
      removed: z.boolean(),
      file: z.string(),
      checksum: z.string(),
    })).optional(),
    sysvUsed: z.array(z.looseObject({
      kind: z.enum(["sem", "msg", "shm"]),
      id: nat,
      key: int,
      cuid: nat,
      cgid: nat,
      size: nat,
      why: z.string(),
    })).optional(),
  })
);

/** The first problem of `x` against `schema`, as one line, or undefined when it fits. */
export function schemaProblem(schema: z.ZodType, x: unknown): string | undefined {
  const r = schema.safeParse(x);
  if (r.success) return undefined;
  const issue = r.error.issues[0];
  const where = issue.path.length ? issue.path.join(".") : "(top)";
  return `${where}: ${issue.message.replace(/\s+/g, " ")}`;
}
