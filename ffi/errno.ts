/**
 * Linux errno numbers and their symbolic names (x86-64).
 *
 * @module
 */

/** Symbolic errno names indexed by number (only the ones Linux defines). */
export const ERRNO_NAMES: Readonly<Record<number, string>> = {
  1: "EPERM",
  2: "ENOENT",
  3: "ESRCH",
  4: "EINTR",
  5: "EIO",
  6: "ENXIO",
  7: "E2BIG",
  8: "ENOEXEC",
  9: "EBADF",
  10: "ECHILD",
  11: "EAGAIN",
  12: "ENOMEM",
  13: "EACCES",
  14: "EFAULT",
  16: "EBUSY",
  17: "EEXIST",
  18: "EXDEV",
  19: "ENODEV",
  20: "ENOTDIR",
  21: "EISDIR",
  22: "EINVAL",
  23: "ENFILE",
  24: "EMFILE",
  25: "ENOTTY",
  26: "ETXTBSY",
  27: "EFBIG",
  28: "ENOSPC",
  29: "ESPIPE",
  30: "EROFS",
  32: "EPIPE",
  34: "ERANGE",
  35: "EDEADLK",
  36: "ENAMETOOLONG",
  38: "ENOSYS",
  39: "ENOTEMPTY",
  40: "ELOOP",
  61: "ENODATA",
  75: "EOVERFLOW",
  95: "EOPNOTSUPP",
  98: "EADDRINUSE",
  99: "EADDRNOTAVAIL",
  110: "ETIMEDOUT",
  111: "ECONNREFUSED",
  116: "ESTALE",
  512: "ERESTARTSYS",
  513: "ERESTARTNOINTR",
  514: "ERESTARTNOHAND",
  516: "ERESTART_RESTARTBLOCK",
};

/** Numeric errno values used by cryo's own logic. */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  EIO: 5,
  EBADF: 9,
  ECHILD: 10,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  EINVAL: 22,
  ENOSPC: 28,
  ENOSYS: 38,
  EOPNOTSUPP: 95,
  ERESTARTSYS: 512,
  ERESTARTNOINTR: 513,
  ERESTARTNOHAND: 514,
  ERESTART_RESTARTBLOCK: 516,
} as const;

/** Returns the symbolic name of an errno value, e.g. `errnoName(3) === "ESRCH"`. */
export function errnoName(errno: number): string {
  return ERRNO_NAMES[errno] ?? `errno ${errno}`;
}
