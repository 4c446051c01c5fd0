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

/**
 * A capability set as the kernel prints it (`%016llx`), from the record's
 * hex text ("0x" and 1 to 16 digits): its digits, zero-padded. A text
 * written otherwise (capitals, no digits, too many) never matches (the
 * kernel prints 16 lowercase digits), and the status is parsed instead.
 */
function capText(name: string, hex: string): string {
  const ok = hex.length > 2 && hex.length <= 18 && hex.startsWith("0x");
  return ok ? `${name}:\t${hex.slice(2).padStart(16, "0")}\n` : "\0";
}

/** The status lines of `want`'s ids, groups and capabilities, each with its "\n" before and after. */
export function credsStatusLines(want: ThreadCredentials): string[] {
  return [
    `\nUid:\t${want.uid.join("\t")}\nGid:\t${want.gid.join("\t")}\n`,
    // The kernel ends the list with a space, also when it is empty.
    `\nGroups:\t${want.groups.join(" ")} \n`,
    "\n" + capText("CapInh", want.capInh) + capText("CapPrm", want.capPrm) +
    capText("CapEff", want.capEff) + capText("CapBnd", want.capBnd) +
    capText("CapAmb", want.capAmb) + `NoNewPrivs:\t${want.noNewPrivs ? 1 : 0}\n`,
  ];
}

/**
 * {@link credsStatusLines} of each record in turn, made again only when a
 * record's fields differ from the previous one's (the threads of a process
 * nearly always share their credentials).
 */
export class CredsLines {
  #last: ThreadCredentials | undefined;
  #lines: string[] = [];

  /** The lines of `want`. */
  of(want: ThreadCredentials): string[] {
    const l = this.#last;
    const same = l !== undefined && l.noNewPrivs === want.noNewPrivs &&
      l.capInh === want.capInh && l.capPrm === want.capPrm && l.capEff === want.capEff &&
      l.capBnd === want.capBnd && l.capAmb === want.capAmb && sameNumbers(l.uid, want.uid) &&
      sameNumbers(l.gid, want.gid) && sameNumbers(l.groups, want.groups);
    if (!same) {
      this.#lines = credsStatusLines(want);
      this.#last = want;
    }
    return this.#lines;
  }
}

function sameNumbers(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Whether status text `status` holds every line of {@link credsStatusLines}. */
export function statusHoldsCreds(status: string, lines: readonly string[]): boolean {
  for (const l of lines) if (!status.includes(l)) return false;
  return true;
}
