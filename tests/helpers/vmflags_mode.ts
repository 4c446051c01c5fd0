/**
 * Shared pieces of the tests of the VmFlags sources (engine/dump/vm_flags.ts):
 * the ready line of tests/targets/rt_maps.c and a run under a forced
 * `CRYO_VMFLAGS` source.
 *
 * @module
 */

/** The ready line of tests/targets/rt_maps.c (its pid first). */
export const RT_MAPS_READY = /^ready pid=(\d+) base=0x[0-9a-f]+ count=\d+$/m;

/**
 * Runs `fn` with `CRYO_VMFLAGS` set to `mode` ("bpf": the iterator for a
 * process of any size; "smaps": never the iterator), unset again after.
 */
export async function withVmFlagsMode<T>(mode: "bpf" | "smaps", fn: () => Promise<T>): Promise<T> {
  Deno.env.set("CRYO_VMFLAGS", mode);
  try {
    return await fn();
  } finally {
    Deno.env.delete("CRYO_VMFLAGS");
  }
}
