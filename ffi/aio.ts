/**
 * Linux native AIO (io_setup) layouts: the ring header the kernel keeps at
 * the start of a context's ring mapping (`struct aio_ring`, fs/aio.c), the
 * completion events after it (`struct io_event`) and the request block
 * io_submit reads (`struct iocb`, include/uapi/linux/aio_abi.h).
 *
 * @module
 */

/** `AIO_RING_MAGIC`: the ring header's magic. */
export const AIO_RING_MAGIC = 0xa10a10a1;
/** Compat features the kernel writes in every ring header. */
export const AIO_RING_COMPAT_FEATURES = 1;
/** Incompat features the kernel writes in every ring header. */
export const AIO_RING_INCOMPAT_FEATURES = 0;
/** Size of `struct aio_ring` (the header before the events). */
export const AIO_RING_HEADER_BYTES = 32;
/** Size of one `struct io_event`. */
export const IO_EVENT_BYTES = 32;
/** Size of `struct iocb`. */
export const IOCB_BYTES = 64;
/** `IOCB_CMD_PREAD`. */
export const IOCB_CMD_PREAD = 0;
/** Byte offset of `head` in the ring header. */
export const AIO_RING_HEAD_OFFSET = 8;

/** The header of an AIO ring (`struct aio_ring` without its events). */
export interface AioRingHeader {
  /** The kernel's index of the context in the mm's table. */
  id: number;
  /** Number of event slots of the ring. */
  nr: number;
  /** Next event to reap (written by user space or io_getevents). */
  head: number;
  /** Next slot the kernel fills. */
  tail: number;
  magic: number;
  compatFeatures: number;
  incompatFeatures: number;
  headerLength: number;
}

/** Decodes the ring header at the start of `bytes`. */
export function decodeAioRingHeader(bytes: Uint8Array): AioRingHeader {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, AIO_RING_HEADER_BYTES);
  const u = (i: number) => dv.getUint32(i * 4, true);
  return {
    id: u(0),
    nr: u(1),
    head: u(2),
    tail: u(3),
    magic: u(4),
    compatFeatures: u(5),
    incompatFeatures: u(6),
    headerLength: u(7),
  };
}

/** A read request: `nbytes` from `fd` into `buf` at `offset`. */
export function encodeIocbPread(
  fd: number,
  buf: bigint,
  nbytes: number,
  offset = 0n,
  data = 0n,
): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(IOCB_BYTES);
  const dv = new DataView(out.buffer);
  dv.setBigUint64(0, data, true); // aio_data
  // aio_key (u32, +8) and aio_rw_flags (+12) stay 0.
  dv.setUint16(16, IOCB_CMD_PREAD, true); // aio_lio_opcode
  dv.setUint32(20, fd, true); // aio_fildes
  dv.setBigUint64(24, buf, true); // aio_buf
  dv.setBigUint64(32, BigInt(nbytes), true); // aio_nbytes
  dv.setBigInt64(40, offset, true); // aio_offset
  return out;
}
