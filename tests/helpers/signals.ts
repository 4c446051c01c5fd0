/**
 * Signal numbers (Linux x86-64) that the tests send and look for, written
 * out here rather than taken from engine/, so that tests compare the
 * engine with an independent table.
 *
 * @module
 */

/** SIGQUIT: 3. */
export const SIGQUIT = 3;
/** SIGTRAP: 5. */
export const SIGTRAP = 5;
/** SIGKILL: 9. */
export const SIGKILL = 9;
/** SIGUSR1: 10. */
export const SIGUSR1 = 10;
/** SIGUSR2: 12. */
export const SIGUSR2 = 12;
/** SIGALRM: 14. */
export const SIGALRM = 14;
/** SIGTERM: 15. */
export const SIGTERM = 15;
/** SIGCONT: 18. */
export const SIGCONT = 18;
/** SIGSTOP: 19. */
export const SIGSTOP = 19;
/** SIGWINCH: 28. */
export const SIGWINCH = 28;
