/**
 * The UTS namespace of a launched tree (`cryo launch --uts`, or one it
 * made itself): dump records its host and domain names; restore sets them
 * in the fresh UTS namespace before the tree runs. Both run in the tree's
 * (or the fresh) namespace, so /proc/sys/kernel/{hostname,domainname}
 * are the namespace's own.
 *
 * @module
 */

import { setUtsName } from "../../ffi/ns.ts";
import { errnoName } from "../../ffi/errno.ts";
import { RestoreError } from "../errors.ts";

const HOSTNAME = "/proc/sys/kernel/hostname";
const DOMAINNAME = "/proc/sys/kernel/domainname";

/** What a UTS namespace holds. */
export interface UtsNames {
  hostname: string;
  domainname: string;
}

const read = (f: string) => Deno.readTextFileSync(f).replace(/\n$/, "");

/** Dump (in the tree's UTS namespace): its names. */
export function collectUts(): UtsNames {
  return { hostname: read(HOSTNAME), domainname: read(DOMAINNAME) };
}

/** Restore (in the fresh UTS namespace): sets the recorded names. */
export function restoreUts(names: UtsNames): void {
  for (const which of ["hostname", "domainname"] as const) {
    const r = setUtsName(which, names[which]);
    if (r < 0n) {
      throw new RestoreError(
        `cannot restore: set${which}(${names[which]}): ${errnoName(Number(-r))}`,
      );
    }
  }
}
