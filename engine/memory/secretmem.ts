/**
 * memfd_secret areas (and fds): their pages are removed from the kernel's
 * direct map, so no other process can read them (not /proc/<pid>/mem, not
 * process_vm_readv, not the fd: open through /proc fails with ENXIO). The
 * dump refuses them by name (`memory.secretmem`): saving them would need
 * code run inside the process, which cryo does not do.
 *
 * @module
 */

/** How /proc names a memfd_secret file (its maps name and fd link). */
export const SECRETMEM_NAME = "/secretmem (deleted)";

/** Whether a maps name or fd target is a memfd_secret file. */
export function isSecretMem(name: string): boolean {
  return name === SECRETMEM_NAME;
}
