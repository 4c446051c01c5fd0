/**
 * The credentials read-back of a restore (engine/task/creds_restore.ts)
 * without parsing each thread's status when it reads as recorded: the
 * recorded uids, gids, groups, capability sets and no_new_privs are
 * written out the way the kernel prints them in /proc/<pid>/task/<tid>/status
 * (fs/proc/array.c), and a status whose lines are exactly those texts holds
 * exactly the recorded values. Any other text (a difference, or a kernel
 * that prints them otherwise) is parsed and compared field by field, as
 * before: this only skips the parse of a status that matches.
 *
 * @module
 */

import type { ThreadCredentials } from "../model.ts";

/** The status lines of `want`'s ids, groups and capabilities, each with its "\n" before and after. */
export function credsStatusLines(want: ThreadCredentials): string[] {
  const cap = (name: string, hex: string) =>
    `\n${name}:\t${BigInt(hex).toString(16).padStart(16, "0")}\n`;
  return [
    `\nUid:\t${want.uid.join("\t")}\nGid:\t${want.gid.join("\t")}\n`,
    // The kernel ends the list with a space, also when it is empty.
    `\nGroups:\t${want.groups.join(" ")} \n`,
    cap("CapInh", want.capInh) + cap("CapPrm", want.capPrm).slice(1) +
    cap("CapEff", want.capEff).slice(1) + cap("CapBnd", want.capBnd).slice(1) +
    cap("CapAmb", want.capAmb).slice(1) + `NoNewPrivs:\t${want.noNewPrivs ? 1 : 0}\n`,
  ];
}

/** Whether status text `status` holds every line of {@link credsStatusLines}. */
export function statusHoldsCreds(status: string, lines: readonly string[]): boolean {
  for (const l of lines) if (!status.includes(l)) return false;
  return true;
}
