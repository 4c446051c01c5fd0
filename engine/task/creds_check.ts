/**
 * Credentials checks that need no process: whether a restorer holding some
 * capabilities can re-create the recorded credentials (restore
 * pre-flight), and how a thread's credentials differ from the record
 * (the check after they are restored).
 *
 * @module
 */

import type { ProcessImage, ThreadCredentials } from "../model.ts";
import { capNames, RESTORE_CAPS } from "./creds.ts";

/**
 * Why the credentials of `processes` cannot be re-created by a restorer
 * whose restored tasks start with the capabilities `available` (one line
 * per problem; empty when they can).
 */
export function credsProblems(processes: readonly ProcessImage[], available: bigint): string[] {
  const out: string[] = [];
  const tools = RESTORE_CAPS & ~available;
  if (tools !== 0n) {
    out.push(`restoring credentials needs ${capNames(tools)}, which this restorer does not have`);
  }
  for (const p of processes) {
    for (const t of p.threads) {
      const c = t.creds;
      if (!c) continue;
      const used = BigInt(c.capInh) | BigInt(c.capPrm) | BigInt(c.capEff) | BigInt(c.capBnd) |
        BigInt(c.capAmb);
      const lacking = used & ~available;
      if (lacking !== 0n) {
        out.push(
          `process ${p.pid} thread ${t.tid} holds ${capNames(lacking)} (in its capability sets ` +
            `or bounding set), which this restorer does not have`,
        );
      }
    }
  }
  return out;
}

/** How `have` differs from `want`, one item per field ("CapEff 0x0, recorded 0x1c0"). */
export function credsDifferences(want: ThreadCredentials, have: ThreadCredentials): string[] {
  const out: string[] = [];
  const same = (a: unknown, b: unknown) =>
    typeof a === "bigint" ? a === b : JSON.stringify(a) === JSON.stringify(b);
  const field = (name: string, w: unknown, h: unknown, show = (v: unknown) => String(v)) => {
    if (!same(w, h)) out.push(`${name} ${show(h)}, recorded ${show(w)}`);
  };
  const ids = (v: unknown) => (v as number[]).join(" ");
  field("uids", want.uid, have.uid, ids);
  field("gids", want.gid, have.gid, ids);
  field("groups", want.groups, have.groups, (v) => `[${ids(v)}]`);
  field("CapInh", BigInt(want.capInh), BigInt(have.capInh), hexOf);
  field("CapPrm", BigInt(want.capPrm), BigInt(have.capPrm), hexOf);
  field("CapEff", BigInt(want.capEff), BigInt(have.capEff), hexOf);
  field("CapBnd", BigInt(want.capBnd), BigInt(have.capBnd), hexOf);
  field("CapAmb", BigInt(want.capAmb), BigInt(have.capAmb), hexOf);
  field("securebits", want.securebits, have.securebits, (v) => hexOf(BigInt(v as number)));
  field("keep-caps", want.keepCaps, have.keepCaps);
  field("no_new_privs", want.noNewPrivs, have.noNewPrivs);
  return out;
}

function hexOf(v: unknown): string {
  return `0x${(v as bigint).toString(16)}`;
}
