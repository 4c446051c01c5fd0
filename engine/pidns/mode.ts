/**
 * Which use of cryo the current user has (`cryo check`): root's (any tree,
 * host pids), rootless (trees started by this user with `cryo launch`, in a
 * user namespace of their own: engine/pidns/userns.ts), or none, with the
 * reason. The rootless answer is probed for real: an emitted program makes
 * the namespaces and maps the ids as `cryo launch` would, then exits.
 *
 * @module
 */

import { posixSpawn } from "../../ffi/spawn.ts";
import { waitPid } from "../../ffi/wait.ts";
import { readStatus } from "../proc/status.ts";
import { rootlessIds } from "./userns.ts";
import { writeUserNsProbe } from "./programs.ts";

/** The use of cryo open to the current user. */
export interface AccessMode {
  /**
   * "host": any process tree, restored with its host pids; "launched": only
   * trees this user started with `cryo launch`; "none": nothing.
   */
  kind: "host" | "launched" | "none";
  /** Why, in one sentence. */
  why: string;
}

const CAP_SYS_PTRACE = 19n;
const CAP_SYS_ADMIN = 21n;
const CAP_CHECKPOINT_RESTORE = 40n;

function sysctl(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(`/proc/sys/${path}`).trim();
  } catch {
    return undefined;
  }
}

/** The sysctl that keeps unprivileged users from making user namespaces, if one does. */
function userNsBlocker(): string | undefined {
  if (sysctl("user/max_user_namespaces") === "0") return "user.max_user_namespaces is 0";
  if (sysctl("kernel/unprivileged_userns_clone") === "0") {
    return "kernel.unprivileged_userns_clone is 0";
  }
  if (sysctl("kernel/apparmor_restrict_unprivileged_userns") === "1") {
    return "kernel.apparmor_restrict_unprivileged_userns is 1";
  }
  return undefined;
}

/** Runs the user namespace probe; undefined when it worked, else what failed. */
function probeUserNs(ids: { uid: number; gid: number }): string | undefined {
  let exe: string;
  try {
    exe = writeUserNsProbe(ids);
  } catch (e) {
    return `the probe could not be written (${(e as Error).message})`;
  }
  try {
    const st = waitPid(posixSpawn(exe, ["cryo-userns-probe"], {}));
    if (st.kind === "exited" && st.code === 0) return undefined;
    return `unshare(CLONE_NEWUSER|CLONE_NEWPID|CLONE_NEWNS) with identity maps failed (${
      st.kind === "exited" ? `status ${st.code}` : st.kind
    })`;
  } finally {
    Deno.removeSync(exe);
  }
}

/** Probes which use of cryo is open to this process's user. */
export function accessMode(): AccessMode {
  const st = readStatus(Deno.pid);
  const has = (bit: bigint) => ((st.capEff >> bit) & 1n) === 1n;
  const uid = st.uid[1];
  if (!rootlessIds()) {
    if (has(CAP_SYS_PTRACE) && (has(CAP_CHECKPOINT_RESTORE) || has(CAP_SYS_ADMIN))) {
      return { kind: "host", why: "privileged: any process tree, restored with its host pids" };
    }
  }
  const ids = rootlessIds() ?? { uid, gid: st.gid[1] };
  const failed = probeUserNs(ids);
  if (!failed) {
    return {
      kind: "launched",
      why:
        `without CAP_SYS_ADMIN (uid ${uid}): only trees started with "cryo launch" by this user, ` +
        `in a user namespace of their own (user namespaces are enabled)`,
    };
  }
  const blocker = userNsBlocker();
  return {
    kind: "none",
    why: `without CAP_SYS_ADMIN (uid ${uid}) and no user namespace can be made: ${
      blocker ?? failed
    }`,
  };
}
