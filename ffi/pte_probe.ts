/**
 * How long this host takes to change one page table entry: a probe on
 * cryo's own memory. A private anonymous range of {@link PTE_PROBE_BYTES}
 * (huge pages refused: one PMD would stand for 512 entries) is populated
 * and touched from user mode (on the bench VM a range only the kernel
 * wrote changes at 70 to 110 ns an entry, the same range touched at 520 to
 * 680 ns: the hypervisor's shadow entries exist only once used), then made read-only and writable again a few times (`mprotect`, each a
 * walk changing every entry of the range); the fastest round, divided by
 * the entries it changed, is the cost of one entry change.
 *
 * On bare metal or a hardware-assisted VM this is some tens of
 * nanoseconds; on a guest whose page tables the hypervisor shadows (the
 * bench VM is a PVM guest) each change traps, 0.4 to 0.6 us measured here,
 * and a program thread running in the same address space is stalled for
 * the whole walk (docs/PERFORMANCE.md, seventeenth pass, branch
 * bigfreeze).
 *
 * @module
 */

import { rawSyscall } from "./libc.ts";
import { SYS } from "./sysno.ts";

/** Bytes of the probe's range (256 entries of 4 KiB). */
export const PTE_PROBE_BYTES = 1024 * 1024;
/** mprotect round trips timed (the fastest counts). */
export const PTE_PROBE_ROUNDS = 8;

const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_PRIVATE = 0x02;
const MAP_ANONYMOUS = 0x20;
const MADV_NOHUGEPAGE = 15;
const MADV_POPULATE_WRITE = 23;
const CLOCK_MONOTONIC = 1;

function nowNs(ts: BigInt64Array): bigint {
  rawSyscall(SYS.clock_gettime, CLOCK_MONOTONIC, ts);
  return ts[0] * 1_000_000_000n + ts[1];
}

/**
 * Nanoseconds to change one page table entry of cryo's own memory (the
 * fastest of {@link PTE_PROBE_ROUNDS} round trips of `mprotect` over
 * {@link PTE_PROBE_BYTES}), or undefined when the range cannot be mapped or
 * populated. Takes 8 to 12 ms on the bench VM (the first touches trap too). Never throws.
 */
export function pteChangeNs(): number | undefined {
  const bytes = PTE_PROBE_BYTES;
  const addr = rawSyscall(
    SYS.mmap,
    0,
    bytes,
    PROT_READ | PROT_WRITE,
    MAP_PRIVATE | MAP_ANONYMOUS,
    -1,
    0,
  );
  if (addr < 0n) return undefined;
  try {
    rawSyscall(SYS.madvise, addr, bytes, MADV_NOHUGEPAGE); // (a kernel without THP: nothing to refuse)
    if (rawSyscall(SYS.madvise, addr, bytes, MADV_POPULATE_WRITE) < 0n) return undefined;
    // Touched from user mode too: a hypervisor that shadows the page tables builds its
    // entries at the first access (a range only the kernel wrote changes at native cost).
    const view = new Uint8Array(
      Deno.UnsafePointerView.getArrayBuffer(Deno.UnsafePointer.create(addr)!, bytes),
    );
    for (let at = 0; at < bytes; at += 4096) view[at] = 1;
    const ts = new BigInt64Array(2);
    let best = -1n;
    for (let round = 0; round < PTE_PROBE_ROUNDS; round++) {
      const t0 = nowNs(ts);
      if (rawSyscall(SYS.mprotect, addr, bytes, PROT_READ) < 0n) return undefined;
      if (rawSyscall(SYS.mprotect, addr, bytes, PROT_READ | PROT_WRITE) < 0n) return undefined;
      const took = nowNs(ts) - t0;
      if (best < 0n || took < best) best = took;
    }
    return Number(best) / (2 * (bytes / 4096));
  } finally {
    rawSyscall(SYS.munmap, addr, bytes);
  }
}
