/**
 * Typed, synchronous readers of /proc/<pid>/*. Every failure is a
 * {@link ProcError}: {@link ProcessGoneError} when the process is gone or a
 * zombie, {@link ProcPermissionError}, {@link ProcEntryNotFoundError} when
 * one entry (fd, thread) vanished while the process lives.
 *
 * @module
 */

export * from "./errors.ts";
export * from "./io.ts";
export * from "./maps.ts";
export * from "./smaps.ts";
export * from "./stat.ts";
export * from "./status.ts";
export * from "./auxv.ts";
export * from "./tasks.ts";
export * from "./fdinfo.ts";
export * from "./fds.ts";
export * from "./pagemap.ts";
export * from "./limits.ts";
export * from "./misc.ts";
export * from "./mountinfo.ts";
export * from "./locks.ts";
export * from "./netlink.ts";
export * from "./timers.ts";
