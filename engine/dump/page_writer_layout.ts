/**
 * Shared-memory layout between the page writer and its worker: one Int32
 * per slot (empty or full), then two control words.
 *
 * @module
 */

/** A slot the main thread may fill. */
export const SLOT_EMPTY = 0;
/** A slot the worker must write. */
export const SLOT_FULL = 1;
/** Number of buffer slots. */
export const SLOTS = 2;
/** Indices of the control words after the slot states. */
export const CTRL = { failed: SLOTS, done: SLOTS + 1 } as const;
