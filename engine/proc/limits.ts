/**
 * Reader of /proc/<pid>/limits into the model's {@link Rlimit} records.
 *
 * @module
 */

import type { Rlimit } from "../model.ts";
import { ProcFormatError } from "./errors.ts";
import { procPath, readProcText } from "./io.ts";

/** RLIMIT_* names in resource-number order (index = resource number). */
export const RLIMIT_NAMES = [
  "CPU",
  "FSIZE",
  "DATA",
  "STACK",
  "CORE",
  "RSS",
  "NPROC",
  "NOFILE",
  "MEMLOCK",
  "AS",
  "LOCKS",
  "SIGPENDING",
  "MSGQUEUE",
  "NICE",
  "RTPRIO",
  "RTTIME",
] as const;

/** The description column of /proc/<pid>/limits for each resource number. */
const DESCRIPTIONS = [
  "Max cpu time",
  "Max file size",
  "Max data size",
  "Max stack size",
  "Max core file size",
  "Max resident set",
  "Max processes",
  "Max open files",
  "Max locked memory",
  "Max address space",
  "Max file locks",
  "Max pending signals",
  "Max msgqueue size",
  "Max nice priority",
  "Max realtime priority",
  "Max realtime timeout",
];

/** Width of the description column ("%-25s "). */
const NAME_WIDTH = 25;

function limitValue(text: string, pid: number, path: string): number | "inf" {
  if (text === "unlimited") return "inf";
  const n = Number(text);
  if (!Number.isFinite(n) || text === "") throw new ProcFormatError(pid, path, `bad limit ${text}`);
  return n;
}

/** Parses the text of a limits file (resource numbers from the description). */
export function parseLimits(text: string, pid = 0, path = "limits"): Rlimit[] {
  const out: Rlimit[] = [];
  const lines = text.split("\n").filter((l) => l.trim() !== "");
  for (const line of lines.slice(1)) {
    const desc = line.slice(0, NAME_WIDTH).trim();
    const [soft, hard] = line.slice(NAME_WIDTH).trim().split(/\s+/);
    let resource = DESCRIPTIONS.indexOf(desc);
    if (resource < 0) resource = out.length; // unknown wording: the kernel prints in order
    out.push({
      resource,
      name: RLIMIT_NAMES[resource] ?? desc,
      soft: limitValue(soft ?? "", pid, path),
      hard: limitValue(hard ?? "", pid, path),
    });
  }
  return out.sort((a, b) => a.resource - b.resource);
}

/** Reads /proc/<pid>/limits. */
export function readLimits(pid: number): Rlimit[] {
  return parseLimits(readProcText(pid, "limits"), pid, procPath(pid, "limits"));
}
