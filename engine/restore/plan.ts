/**
 * The restore plan of an image, as text: what the engine does at each
 * image's exec stop, the restore program the stub runs (one syscall a
 * line, like strace), and the finalization the engine performs.
 *
 * @module
 */

import { formatOp, opName, programStringReader } from "../program/builder.ts";
import { planRestore, type RestoreOptions } from "./mod.ts";
import { describeSource } from "../fds/mod.ts";
import { finishInetPlan } from "../fds/inet_plan.ts";
import type { CredsSections } from "../task/creds.ts";

/** The finalize lines of the credentials sections (run last, each thread its own). */
function credsPlan(c: CredsSections): string[] {
  return [
    ...c.threads.map((s) =>
      `thread ${s.tid}: own state (threads but the main one) and credentials, program from op #${s.op} (last)`
    ),
    "every thread's credentials read back and compared with the image",
  ];
}

/** The plan of one process. */
export interface ProcessPlan {
  pid: number;
  comm: string;
  /** Steps done by the engine by syscall injection at the exec stop. */
  prologue: string[];
  /** The restore program, one formatted op per line. */
  program: string[];
  /** Steps done by the engine once every program has finished. */
  finalize: string[];
  /** How each fd is re-created. */
  fds: string[];
}

/** Compiles the restore plan of every process of an image directory (creates nothing). */
export async function restorePlan(dir: string, opts: RestoreOptions = {}): Promise<ProcessPlan[]> {
  const plan = await planRestore(dir, { ...opts, verifyChecksums: opts.verifyChecksums ?? false });
  return plan.units.map(({ image, compiled }) => {
    const boot = compiled.bootstrap;
    const size = image.bootstrap.size;
    const prologue = image.inheritsMemory ? inheritPrologue(image.ppid, boot, size) : [
      `mmap(${
        hex(boot.base)
      }, ${size}, PROT_READ|PROT_WRITE|PROT_EXEC, MAP_PRIVATE|MAP_FIXED|MAP_ANONYMOUS, -1, 0)  # bootstrap, then the ${boot.blob.length}-byte blob is written into it`,
      ...image.mappings.filter((m) => m.kind === "vdso").map((m) =>
        `mremap(<current ${m.name}>, ...) -> ${m.start}  # via scratch ${hex(compiled.vdsoScratch)}`
      ),
      "munmap(<everything else the kernel mapped for the exec>)",
      `rip = ${hex(boot.entryRestore)}  # the stub's restore entry`,
    ];
    const readString = programStringReader(boot.restore.bytes, boot.restore.base);
    const width = String(boot.restore.ops.length - 1).length;
    const program = boot.restore.ops.map((op, i) =>
      `#${String(i).padStart(width, "0")} ${formatOp(op, { readString })}`
    );
    const finalize: string[] = [];
    for (const t of image.threads) {
      if (t.tid !== image.pid) {
        finalize.push(
          `thread ${t.tid}: set_robust_list, rseq, sigaltstack, prctl(PR_SET_NAME) by injection`,
        );
      }
    }
    finalize.push(...credsPlan(compiled.creds));
    for (const d of compiled.deferred) {
      finalize.push(
        `${opName(d.nr)}(${d.args.map((a) => `0x${a.toString(16)}`).join(", ")})  # ${d.what}`,
      );
    }
    finalize.push(`munmap(${hex(boot.base)}, ${size})  # the bootstrap, via a syscall outside it`);
    for (const t of image.threads) {
      const restart = t.syscall.restart === "restart"
        ? ` (interrupted syscall ${t.syscall.nr}: issued again at the release, by the kernel's restart)`
        : "";
      finalize.push(
        `thread ${t.tid}: PTRACE_SETREGSET(NT_X86_XSTATE), PTRACE_SETREGS rip=${t.regs.rip}${restart}, PTRACE_SETSIGMASK ${t.sigmask}`,
      );
    }
    if (image.stopped) {
      finalize.push(`kill(${image.pid}, ${image.stopped.signal}) first: restored stopped`);
    }
    finalize.push(...finishInetPlan(image));
    finalize.push("PTRACE_DETACH every thread of the tree at once");
    const fds = compiled.fds.map(describeSource);
    return { pid: image.pid, comm: image.comm, prologue, program, finalize, fds };
  });
}

function hex(v: bigint): string {
  return `0x${v.toString(16)}`;
}

/** What the engine does at the birth stop of a child that inherits its parent's memory. */
function inheritPrologue(
  ppid: number,
  boot: { base: bigint; blob: Uint8Array; entryRestore: bigint },
  size: number,
): string[] {
  return [
    `# at its birth stop: forked by ${ppid} once ${ppid}'s memory is in, nothing exec'ed`,
    `mmap(${
      hex(boot.base)
    }, ${size}, PROT_READ|PROT_WRITE|PROT_EXEC, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE, -1, 0)  # bootstrap, then the ${boot.blob.length}-byte blob is written into it`,
    `rip = ${hex(boot.entryRestore)}  # the stub's restore entry`,
  ];
}
