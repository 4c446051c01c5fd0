/**
 * Namespace and mount constants of the kernel ABI used by the programs
 * cryo emits for private pid namespaces (engine/pidns/): unshare/setns
 * flags and mount(2) flags.
 *
 * @module
 */

import { rawSyscall } from "./libc.ts";
import { SYS } from "./sysno.ts";

/** CLONE_NEW* flags of unshare(2), setns(2) and clone3(2). */
export const CLONE_NS = {
  /** A new mount namespace. */
  NEWNS: 0x20000n,
  /** A new user namespace (owning the other namespaces made with it). */
  NEWUSER: 0x10000000n,
  /** A new pid namespace (for the caller's children). */
  NEWPID: 0x20000000n,
  /** A new UTS namespace (hostname, domainname). */
  NEWUTS: 0x04000000n,
  /** A new IPC namespace (System V objects, POSIX message queues). */
  NEWIPC: 0x08000000n,
} as const;

/** mount(2) flags. */
export const MS = {
  RDONLY: 0x1,
  NOATIME: 0x400,
  NODIRATIME: 0x800,
  RELATIME: 0x200000,
  STRICTATIME: 0x1000000,
  REMOUNT: 0x20,
  BIND: 0x1000,
  NOSUID: 0x2,
  NODEV: 0x4,
  NOEXEC: 0x8,
  REC: 0x4000,
  SLAVE: 0x80000,
} as const;

/** open(2) flags used by the emitted programs. */
export const O = { WRONLY: 1, CREAT: 0o100, TRUNC: 0o1000, CLOEXEC: 0o2000000 } as const;

/**
 * sethostname(2) or setdomainname(2) of the caller's UTS namespace (which
 * needs CAP_SYS_ADMIN in the user namespace owning it; unlike writing
 * /proc/sys/kernel/hostname, it works in a rootless namespace whose root is
 * unmapped). Returns 0 or -errno.
 */
export function setUtsName(which: "hostname" | "domainname", name: string): bigint {
  const bytes = new TextEncoder().encode(name);
  const nr = which === "hostname" ? SYS.sethostname : SYS.setdomainname;
  return rawSyscall(nr, bytes, bytes.length);
}
