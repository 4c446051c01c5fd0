/**
 * Keyrings (keyctl(2)). A process's thread and process keyrings are not
 * saved yet: dump refuses them (task.keyrings; the thread keyring is
 * looked for in every thread: {@link checkThreadKeyrings}). The session
 * keyring is looked for in the main thread only: asking a thread for it
 * installs one where there is none (a thread that joined its own session
 * keyring is not seen). Its session keyring is the restorer's
 * after restore: dump records it when it holds keys and is not the user's
 * fallback (`_uid_ses.<uid>`, which a process of that uid gets again), and
 * the restore pre-flight refuses an image whose recorded session keyring
 * is not the restorer's (task.session-keyring). An empty session keyring
 * of its own (a login's or a systemd service's: pam_keyinit, KeyringMode)
 * is not recorded, so that such processes stay restorable from another
 * session: the restored process then has the restorer's.
 *
 * @module
 */

import { SYS } from "../../ffi/sysno.ts";
import { rawSyscall } from "../../ffi/libc.ts";
import type { BatchStep } from "../../ffi/syscall_batch.ts";
import { RestoreError } from "../errors.ts";
import type { ProcessImage } from "../model.ts";
import type { Refusals } from "../support.ts";

const KEYCTL_GET_KEYRING_ID = 0;
const KEYCTL_READ = 11;
/** KEY_SPEC_THREAD_KEYRING .. KEY_SPEC_USER_SESSION_KEYRING. */
const SPECS = [-1, -2, -3, -4];
const KEY_SPEC_SESSION_KEYRING = -3;

/** What the target's keyctl calls returned: serials, or -errno (-ENOKEY: none). */
export interface KeyringIds {
  thread: number;
  process: number;
  session: number;
  userSession: number;
  /** The bytes of the session keyring's list of keys (4 per key), or -errno. */
  sessionBytes: number;
}

/**
 * The injected queries (main thread): each special keyring's serial, none
 * created, then the size of the session keyring's list of keys (a read
 * into no buffer).
 */
export function keyringSteps(): BatchStep[] {
  return [
    ...SPECS.map((spec) => ({ nr: SYS.keyctl, args: [KEYCTL_GET_KEYRING_ID, spec, 0] })),
    { nr: SYS.keyctl, args: [KEYCTL_READ, KEY_SPEC_SESSION_KEYRING, 0, 0] },
  ];
}

/** The {@link KeyringIds} of {@link keyringSteps}' results `r` (in order; more are ignored). */
export function keyringIdsFrom(r: readonly bigint[]): KeyringIds {
  const [thread, process, session, userSession, sessionBytes] = r.map(Number);
  return { thread, process, session, userSession, sessionBytes };
}

/**
 * Refuses a thread or process keyring; returns the session keyring's
 * serial to record, undefined when it is the user's fallback, empty (or
 * unreadable) or none.
 */
export function collectKeyrings(
  pid: number,
  ids: KeyringIds | undefined,
  refusals: Refusals,
): number | undefined {
  if (!ids) return undefined;
  for (const [what, id] of [["thread", ids.thread], ["process", ids.process]] as const) {
    if (id > 0) refusals.use("task.keyrings", `process ${pid}`, `it has a ${what} keyring (${id})`);
  }
  const own = ids.session > 0 && ids.session !== ids.userSession;
  return own && ids.sessionBytes > 0 ? ids.session : undefined;
}

/**
 * Refuses the threads of `pid` other than the main thread that have a
 * thread keyring (restored threads have none): `injected`, a thread's
 * keyring serial where it read it (-errno: none), else `records`, its
 * cred->thread_keyring from the task iterator (0: none).
 */
export function checkThreadKeyrings(
  pid: number,
  tids: readonly number[],
  refusals: Refusals,
  injected: (tid: number) => number | undefined,
  records?: ReadonlyMap<number, bigint>,
): void {
  for (const tid of tids) {
    if (tid === pid) continue; // the process's own query (collectKeyrings)
    const id = injected(tid);
    const has = id !== undefined ? id > 0 : (records?.get(tid) ?? 0n) !== 0n;
    if (has) {
      refusals.use(
        "task.keyrings",
        `process ${pid} thread ${tid}`,
        `it has a thread keyring${id !== undefined ? ` (${id})` : ""}`,
      );
    }
  }
}

/**
 * Restore pre-flight: a restored process gets the restorer's session
 * keyring; refuses an image that recorded another one.
 */
export function checkSessionKeyrings(processes: readonly ProcessImage[]): void {
  const wanted = processes.filter((p) => p.attrs?.sessionKeyring !== undefined);
  if (wanted.length === 0) return;
  const own = Number(rawSyscall(SYS.keyctl, KEYCTL_GET_KEYRING_ID, -3, 0));
  for (const p of wanted) {
    if (p.attrs!.sessionKeyring !== own) {
      throw new RestoreError(
        `cannot restore: process ${p.pid} had session keyring ${p.attrs!.sessionKeyring}, ` +
          `restored processes get the restorer's (${own > 0 ? own : "none"})`,
      );
    }
  }
}
