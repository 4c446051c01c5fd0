/**
 * epoll instances: re-created empty, then every watched fd added back with
 * its event mask and data once all fds have their final numbers.
 *
 * @module
 */

import type { FdInfo } from "../model.ts";
import type { FdSource } from "./types.ts";

/** Parses the `tfd:` lines of an epoll fdinfo (`tfd: N events: HEX data: HEX ...`). */
export function epollTargets(f: FdInfo): { fd: number; events: number; data: string }[] {
  const text = f.extra["tfd"];
  if (!text) return [];
  return text.split("\n").filter(Boolean).map((line) => {
    const m = line.match(/^\s*(\d+)\s+events:\s*([0-9a-f]+)\s+data:\s*([0-9a-f]+)/i);
    if (!m) throw new Error(`unreadable epoll watch: ${line}`);
    return { fd: Number(m[1]), events: parseInt(m[2], 16), data: `0x${m[3]}` };
  });
}

/** Restore plan of an epoll fd. */
export function planEpoll(f: FdInfo, allFds: readonly FdInfo[]): FdSource | string {
  let targets;
  try {
    targets = epollTargets(f);
  } catch (e) {
    return (e as Error).message;
  }
  for (const t of targets) {
    const watched = allFds.find((x) => x.fd === t.fd);
    if (!watched || watched.excluded) {
      return `watches fd ${t.fd}, which is not restored (its watch cannot be re-added)`;
    }
  }
  return { kind: "epoll", flags: f.flags, targets };
}
