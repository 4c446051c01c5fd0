/**
 * The memory of a packet socket's rx/tx rings (PACKET_RX_RING,
 * PACKET_TX_RING), read through a mapping of cryo's own copy of the socket:
 * the kernel's order of blocks, whatever the program did with its mapping.
 *
 * @module
 */

import { syscall } from "./libc.ts";
import { SYS } from "./sysno.ts";

const PROT_READ = 1;
const MAP_SHARED = 1;

/** A copy of the `length` bytes of the rings of packet socket `fd` (rx ring first, then tx). */
export function readPacketRings(fd: number, length: number): Uint8Array {
  // The kernel maps the whole of both rings or nothing, from offset 0.
  const addr = syscall(SYS.mmap, 0, length, PROT_READ, MAP_SHARED, fd, 0);
  try {
    const view = new Deno.UnsafePointerView(Deno.UnsafePointer.create(addr)!);
    return new Uint8Array(view.getArrayBuffer(length)).slice();
  } finally {
    syscall(SYS.munmap, addr, length);
  }
}
