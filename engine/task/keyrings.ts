/**
 * Keyrings (keyctl(2)). A process's thread and process keyrings are not
 * saved yet: dump refuses them (task.keyrings; the thread keyring is
 * looked for in every thread: {@link checkThreadKeyrings}). The session
 * keyring is looked for in the main thread only: asking a thread for it
 * (KEYCTL_GET_KEYRING_ID or any lookup of KEY_SPEC_SESSION_KEYRING, even
 * without create: security/keys/process_keys.c lookup_user_key) installs
 * the user's session keyring in its task->cred where there is none, a new
 * struct cred; asking for KEY_SPEC_USER_SESSION_KEYRING creates the user's
 * keyrings where they do not exist. So where the BPF task iterator's record
 * of the main thread says its task->cred has no session keyring
 * ({@link SessionKeyringKnown} "none"), neither is asked and the process
 * has none; without a record (the iterator not loaded: a process of fewer
 * threads than engine/dump/thread_state.ts `threadStateBpf.minThreads`
 * whose dump did not load it, a rootless dump) they are asked as before,
 * and a process without a session keyring leaves the dump with the user's
 * (a thread that joined its own session keyring is not seen). Its session keyring is the restorer's
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
import {
  inInitialPidNamespace,
  readThreadRecords,
  threadIteratorLoaded,
} from "../proc/thread_state_bpf.ts";
import { credRecordsIfLoaded } from "./landlock.ts";

const KEYCTL_GET_KEYRING_ID = 0;
const KEYCTL_READ = 11;
/**
 * KEY_SPEC_THREAD_KEYRING, _PROCESS_, _SESSION_ and _USER_SESSION_KEYRING
 * (-5; -4 is the user keyring, never a process's session keyring).
 */
const SPECS = [-1, -2, -3, -5];
const KEY_SPEC_SESSION_KEYRING = -3;

/**
 * Whether the main thread's task->cred has a session keyring, as the BPF
 * task iterator read it (ffi/bpf_task.ts `TaskRecord.sessionKeyring`), or
 * undefined when not known (then it is asked by injection).
 */
export type SessionKeyringKnown = "none" | "set" | undefined;

const ENOKEY = 126;

/**
 * Whether the main thread `pid` (stopped) has a session keyring: from the
 * iterator's records already read for this freeze (`known`), else from its
 * record read now when the task program is loaded (~0.1 ms; the dump loads
 * it for processes with many threads) or the small Landlock program (loaded
 * for the others on a host with Landlock enabled: engine/task/landlock.ts),
 * else undefined.
 */
export function mainSessionKeyring(
  pid: number,
  known?: { sessionKeyring?: "none" | "set" },
): SessionKeyringKnown {
  if (known?.sessionKeyring) return known.sessionKeyring;
  if (!inInitialPidNamespace()) return undefined;
  if (!threadIteratorLoaded()) {
    // The small Landlock program's record, when that is the one loaded.
    return credRecordsIfLoaded(pid)?.find((r) => r.tid === pid && r.tgid === pid)?.sessionKeyring;
  }
  try {
    const main = readThreadRecords(pid).find((r) => r.tid === pid && r.tgid === pid);
    return main?.credRead ? main.sessionKeyring : undefined;
  } catch {
    return undefined;
  }
}

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
 * into no buffer). With `session` "none" (the main thread has no session
 * keyring), only the thread and process keyrings' (lookups that install
 * nothing without create): asking for the session keyring would install
 * one.
 */
export function keyringSteps(session?: SessionKeyringKnown): BatchStep[] {
  const specs = session === "none" ? SPECS.slice(0, 2) : SPECS;
  return [
    ...specs.map((spec) => ({ nr: SYS.keyctl, args: [KEYCTL_GET_KEYRING_ID, spec, 0] })),
    ...(session === "none"
      ? []
      : [{ nr: SYS.keyctl, args: [KEYCTL_READ, KEY_SPEC_SESSION_KEYRING, 0, 0] }]),
  ];
}

/**
 * The {@link KeyringIds} of {@link keyringSteps}' results `r` (in order;
 * more are ignored): the session keyring's, not asked ("none"), are -ENOKEY.
 */
export function keyringIdsFrom(r: readonly bigint[], session?: SessionKeyringKnown): KeyringIds {
  const [thread, process, ...rest] = r.map(Number);
  const [sess, userSession, sessionBytes] = session === "none" ? [-ENOKEY, -ENOKEY, -ENOKEY] : rest;
  return { thread, process, session: sess, userSession, sessionBytes };
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
