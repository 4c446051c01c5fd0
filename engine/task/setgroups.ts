/**
 * Whether this process's user namespace denies setgroups(2): a rootless
 * namespace (engine/pidns/userns.ts) must deny it to map its gid, so no
 * task in it can change its supplementary groups; a restore there keeps
 * the ones it inherits, and trust.ts refuses an image recording others.
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
