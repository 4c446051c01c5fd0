/**
 * Facts about the user namespace cryo's engine runs in. A rootless dump or
 * restore (engine/pidns/userns.ts) runs in a user namespace of its own:
 * there the engine's capabilities do not reach what the host's user
 * namespace owns (the network and IPC namespaces: TCP repair, SysV ids;
 * map_files links; TIOCSTI), and setgroups(2) is denied, so no task can
 * change its supplementary groups (a restore keeps the ones it inherits,
 * and trust.ts refuses an image recording others).
 *
 * @module
 */

/** True when /proc/self/setgroups says "deny". */
export function setgroupsDenied(): boolean {
  try {
    return Deno.readTextFileSync("/proc/self/setgroups").trim() === "deny";
  } catch {
    return false;
  }
}

/** True when this process is in the initial user namespace (its uid_map maps every uid). */
export function inInitialUserNs(): boolean {
  try {
    const map = Deno.readTextFileSync("/proc/self/uid_map").trim().split(/\s+/);
    return map.length === 3 && map[0] === "0" && map[1] === "0" && map[2] === "4294967295";
  } catch {
    return true;
  }
}
