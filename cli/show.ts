/**
 * `cryo show <dir|file.elf>`: describe an image without restoring it.
 *
 * @module
 */

import type { Command } from "npm:@commander-js/extra-typings@15.1.0";
import { readImage } from "../engine/inspect.ts";
import { restorePlan } from "../engine/restore/plan.ts";
import { describeSource, planFds } from "../engine/fds/mod.ts";
import { parseInheritFds } from "./restore.ts";
import type { OutsideContext } from "../engine/fds/outside.ts";
import { UnsupportedError } from "../engine/errors.ts";
import { describeUnixSocket } from "../engine/fds/unix.ts";
import { OPT_IN_FLAGS } from "./dump.ts";
import type { Mapping, ProcessImage } from "../engine/model.ts";
import { humanBytes, printJson } from "./format.ts";
import { renderTable } from "./table.ts";
import { describePosixTimer } from "../engine/task/timers.ts";
import { resolveChain } from "../engine/image/chain.ts";

/** The chain of `dir`, itself first; a missing or changed parent is named as such. */
async function describeChain(dir: string): Promise<string[]> {
  try {
    return (await resolveChain(dir)).map((l) => l.dir);
  } catch (e) {
    return [dir, `(${e instanceof Error ? e.message : String(e)})`];
  }
}

const SIGNAL_NAMES = [
  "",
  "HUP",
  "INT",
  "QUIT",
  "ILL",
  "TRAP",
  "ABRT",
  "BUS",
  "FPE",
  "KILL",
  "USR1",
  "SEGV",
  "USR2",
  "PIPE",
  "ALRM",
  "TERM",
  "STKFLT",
  "CHLD",
  "CONT",
  "STOP",
  "TSTP",
  "TTIN",
  "TTOU",
  "URG",
  "XCPU",
  "XFSZ",
  "VTALRM",
  "PROF",
  "WINCH",
  "IO",
  "PWR",
  "SYS",
];

function signalName(n: number): string {
  return SIGNAL_NAMES[n] ? `SIG${SIGNAL_NAMES[n]}` : `SIGRT${n - 32}`;
}

function maskNames(mask: string): string {
  const m = BigInt(mask);
  const names: string[] = [];
  for (let i = 1; i <= 64; i++) if ((m >> BigInt(i - 1)) & 1n) names.push(signalName(i));
  return names.length ? names.join(" ") : "-";
}

function saved(m: Mapping): number {
  return m.pages.reduce((n, r) => n + r.length, 0);
}

function describeProcess(p: ProcessImage, outside?: OutsideContext): string {
  const out: string[] = [];
  out.push(`process ${p.pid} (${p.comm})  parent ${p.ppid}  pgid ${p.pgid}  sid ${p.sid}`);
  out.push(`  exe ${p.exe?.path ?? "-"}`);
  out.push(`  cmdline ${p.cmdline.map((a) => JSON.stringify(a)).join(" ")}`);
  out.push(`  cwd ${p.cwd}  root ${p.root}  umask ${p.umask.toString(8).padStart(4, "0")}`);
  out.push("");
  out.push(renderTable(
    ["tid", "comm", "rip", "rsp", "fs_base", "in syscall", "blocked"],
    p.threads.map((t) => [
      String(t.tid),
      t.comm,
      t.regs.rip,
      t.regs.rsp,
      t.regs.fs_base,
      t.syscall.nr >= 0
        ? `${t.syscall.nr}${t.syscall.restart === "restart" ? " (restarts)" : ""}`
        : "-",
      maskNames(t.sigmask),
    ]),
  ));
  out.push(renderTable(
    ["range", "perms", "kind", "file / name", "saved"],
    p.mappings.map((m) => [
      `${m.start}-${m.end}`,
      m.perms,
      m.kind,
      m.name,
      (saved(m) ? humanBytes(saved(m)) : "-") + (m.inherited ? " + parent's" : ""),
    ]),
  ));
  let fdPlan: Map<number, string>;
  try {
    fdPlan = new Map(
      planFds(p, undefined, undefined, undefined, undefined, undefined, false, outside).map((
        f,
      ) => [f.fd, describeSource(f).replace(/^fd \d+ = /, "")]),
    );
  } catch (e) {
    // One line per fd the restore needs more for ("fd N (target): why"), the rest generic.
    const why = new Map(
      (e instanceof UnsupportedError ? e.items : []).flatMap((item) => {
        const m = item.match(/^fd (\d+) \([^)]*\): (.*)$/);
        return m ? [[Number(m[1]), m[2]] as const] : [];
      }),
    );
    let rest: Map<number, string> | undefined;
    try {
      const others = { ...p, fds: p.fds.filter((f) => !why.has(f.fd)) };
      rest = new Map(
        planFds(others, undefined, undefined, undefined, undefined, undefined, false, outside)
          .map((f) => [f.fd, describeSource(f).replace(/^fd \d+ = /, "")]),
      );
    } catch { /* generic below */ }
    fdPlan = new Map(
      p.fds.map((f) => [
        f.fd,
        why.get(f.fd) ?? rest?.get(f.fd) ??
          (f.kind === "unknown" ? "unsupported" : f.socket?.unix ? "re-created" : "see restore"),
      ]),
    );
  }
  out.push(renderTable(
    ["fd", "kind", "target", "flags", "pos", "on restore"],
    p.fds.map((f) => [
      String(f.fd),
      f.kind,
      f.socket?.unix ? `${f.target} ${describeUnixSocket(f.socket.unix, f.socket.type)}` : f.target,
      `0${f.flags.toString(8)}${f.cloexec ? " cloexec" : ""}`,
      String(f.pos),
      fdPlan.get(f.fd) ?? (f.restore === "tree" ? "not supported yet" : f.restore),
    ]),
  ));
  const handled = p.sigactions.map((a, i) => ({ a, sig: i + 1 })).filter(({ a }) =>
    BigInt(a.handler) !== 0n
  );
  out.push(
    `  signal handlers: ${
      handled.map(({ a, sig }) =>
        `${signalName(sig)}=${BigInt(a.handler) === 1n ? "ignore" : a.handler}`
      ).join(" ") || "-"
    }`,
  );
  out.push(
    `  pending (process): ${p.sharedPending.map((s) => signalName(s.signo)).join(" ") || "-"}`,
  );
  const timers = Object.entries(p.itimers).filter(([, t]) => t.valueUs || t.intervalUs);
  out.push(
    `  itimers: ${
      timers.map(([k, t]) => `${k} value ${t.valueUs}us interval ${t.intervalUs}us`).join("; ") ||
      "-"
    }`,
  );
  const posix = p.posixTimers ?? [];
  out.push(`  POSIX timers: ${posix.length ? "" : "-"}`.trimEnd());
  for (const t of posix) out.push(`    ${describePosixTimer(t)}`);
  return out.join("\n");
}

/** Registers `show` on the program. */
export function register(program: Command): void {
  program
    .command("show")
    .description("describe a checkpoint image: processes, threads, mappings, fds")
    .argument("<image>", "image directory, or one process's .elf file")
    .option("--json", "print the typed model (the same as readImage()) as JSON")
    .option("--plan", "print the restore program, one syscall per line like strace")
    .option(
      "--inherit-fd <spec...>",
      "with --plan: the restore's fd replacements (<fd>=<path> or <fd>=fd:<n>), as restore takes them",
    )
    .addHelpText(
      "after",
      `
Examples:
  cryo show /var/lib/cryo/app-1
  cryo show /var/lib/cryo/app-1 --plan
  cryo show /var/lib/cryo/app-1 --json`,
    )
    .action(async (image, opts) => {
      if (opts.plan) {
        // The plan of the restore the image asks for: with the opt-ins it records.
        const plans = await restorePlan(image, {
          optIns: [...OPT_IN_FLAGS],
          inheritFds: parseInheritFds(opts.inheritFd),
        });
        if (opts.json) return printJson(plans);
        for (const p of plans) {
          console.log(`# process ${p.pid} (${p.comm})`);
          console.log("## engine, at the exec stop of the image");
          for (const l of p.prologue) console.log(`   ${l}`);
          console.log("## restore program (run by the stub)");
          for (const l of p.program) console.log(`   ${l}`);
          console.log("## engine, when every program has finished");
          for (const l of p.finalize) console.log(`   ${l}`);
          console.log("## fds");
          for (const l of p.fds) console.log(`   ${l}`);
          console.log("");
        }
        return;
      }
      const model = await readImage(image);
      if (opts.json) return printJson(model);
      if (model.manifest) {
        const m = model.manifest;
        console.log(
          `image ${model.path}: ${m.processes.length} process(es), format ${m.formatVersion}, ` +
            `cryo ${m.toolVersion}, ${m.createdAt}, kernel ${m.host.kernelRelease}`,
        );
        if (m.tracking) {
          console.log(
            `pre-dump: the tree was left running with dirty tracking armed (generation ${m.tracking.generation})`,
          );
        }
        if (m.parent) {
          const chain = await describeChain(image);
          console.log(`parent chain: ${chain.join(" <- ")}`);
        }
        if (m.optIns?.length) {
          console.log(
            `opt-ins: ${m.optIns.map((o) => `--${o}`).join(" ")} (restore needs them too)`,
          );
        }
        if (m.pidNamespace === "own") {
          console.log(
            "pid namespace: its own (cryo launch); pids are the ones inside, and restore makes a fresh one",
          );
        }
        const ns = m.namespaces;
        if (ns) {
          const parts = [
            ...(ns.uts ? [`uts (host name ${ns.uts.hostname})`] : []),
            ...(ns.ipc
              ? [
                `ipc (${ns.ipc.msgQueues.length} message queues, ${ns.ipc.semSets.length} semaphore sets)`,
              ]
              : []),
            ...(ns.mounts ?? []).map((t) => `tmpfs ${t.mountPoint} (${t.entries.length} entries)`),
          ];
          console.log(`its own namespaces also: ${parts.join(", ")}; restore re-creates them`);
        }
        const children = new Map<number, number[]>();
        for (const p of model.processes) {
          children.set(p.pid, p.children);
        }
        const tree = (pid: number, depth: number): void => {
          const p = model.processes.find((x) => x.pid === pid);
          console.log(
            `${"  ".repeat(depth)}${pid} ${p?.comm ?? "?"} (${p?.threads.length ?? 0} thread${
              p?.threads.length === 1 ? "" : "s"
            })`,
          );
          for (const c of children.get(pid) ?? []) tree(c, depth + 1);
        };
        tree(m.rootPid, 0);
        console.log("");
      }
      // Fds leading out of the tree: what stands for them at restore (engine/fds/outside.ts).
      const outside: OutsideContext | undefined = model.manifest
        ? {
          tree: new Map(model.processes.map((p) => [p.pid, p])),
          rootPid: model.manifest.rootPid,
          check: false,
        }
        : undefined;
      for (const p of model.processes) {
        console.log(describeProcess(p, outside));
        console.log("");
      }
    });
}
