/**
 * System V message queues and semaphore sets from cryo itself (the
 * IPC objects of a launched tree's private IPC namespace,
 * engine/pidns/ipc.ts): stat, read a queue's messages without consuming
 * them (MSG_COPY), create, fill, set owner and mode. Layouts are x86-64's
 * `msqid64_ds` and `semid64_ds`.
 *
 * @module
 */

import { rawSyscall, syscall } from "./libc.ts";
import { SYS } from "./sysno.ts";

const IPC_SET = 1;
const IPC_STAT = 2;
const IPC_NOWAIT = 0o4000;
const MSG_COPY = 0o40000;
const GETALL = 13;
const SETALL = 17;
const MSQID_DS_SIZE = 120;
const SEMID_DS_SIZE = 104;

/** The ipc64_perm part of a stat. */
export interface IpcPerm {
  key: number;
  uid: number;
  gid: number;
  cuid: number;
  cgid: number;
  /** Permission bits. */
  mode: number;
}

function perm(v: DataView): IpcPerm {
  return {
    key: v.getInt32(0, true),
    uid: v.getUint32(4, true),
    gid: v.getUint32(8, true),
    cuid: v.getUint32(12, true),
    cgid: v.getUint32(16, true),
    mode: v.getUint16(20, true) & 0o777,
  };
}

function setPerm(v: DataView, uid: number, gid: number, mode: number): void {
  v.setUint32(4, uid, true);
  v.setUint32(8, gid, true);
  v.setUint16(20, mode & 0o777, true);
}

/** A message queue's stat. */
export interface MsgStat extends IpcPerm {
  /** Messages in the queue. */
  qnum: number;
  /** Bytes in the queue. */
  cbytes: number;
  /** The queue's byte limit (msg_qbytes). */
  qbytes: number;
}

/** msgctl(IPC_STAT) of `msqid`. */
export function msgStat(msqid: number): MsgStat {
  const b = new Uint8Array(MSQID_DS_SIZE);
  syscall(SYS.msgctl, msqid, IPC_STAT, b);
  const v = new DataView(b.buffer);
  return {
    ...perm(v),
    cbytes: Number(v.getBigUint64(72, true)),
    qnum: Number(v.getBigUint64(80, true)),
    qbytes: Number(v.getBigUint64(88, true)),
  };
}

/** One message: its type and text. */
export interface IpcMessage {
  mtype: bigint;
  text: Uint8Array;
}

/** Message number `index` (from 0) of queue `msqid`, copied without being consumed (MSG_COPY). */
export function msgCopy(msqid: number, index: number, maxSize: number): IpcMessage {
  const b = new Uint8Array(8 + maxSize);
  const n = Number(syscall(SYS.msgrcv, msqid, b, maxSize, index, IPC_NOWAIT | MSG_COPY));
  return { mtype: new DataView(b.buffer).getBigInt64(0, true), text: b.slice(8, 8 + n) };
}

/** msgget(key, flags): the id, or -errno. */
export function msgGet(key: number, flags: number): number {
  return Number(rawSyscall(SYS.msgget, key, flags));
}

/** msgsnd without waiting; throws on failure. */
export function msgSend(msqid: number, m: IpcMessage): void {
  const b = new Uint8Array(8 + m.text.length);
  new DataView(b.buffer).setBigInt64(0, m.mtype, true);
  b.set(m.text, 8);
  syscall(SYS.msgsnd, msqid, b, m.text.length, IPC_NOWAIT);
}

/** msgctl(IPC_SET): owner, permission bits and byte limit of a queue. */
export function msgSet(
  msqid: number,
  uid: number,
  gid: number,
  mode: number,
  qbytes: number,
): void {
  const b = new Uint8Array(MSQID_DS_SIZE);
  const v = new DataView(b.buffer);
  setPerm(v, uid, gid, mode);
  v.setBigUint64(88, BigInt(qbytes), true);
  syscall(SYS.msgctl, msqid, IPC_SET, b);
}

/** A semaphore set's stat. */
export interface SemStat extends IpcPerm {
  nsems: number;
}

/** semctl(IPC_STAT) of `semid`. */
export function semStat(semid: number): SemStat {
  const b = new Uint8Array(SEMID_DS_SIZE);
  syscall(SYS.semctl, semid, 0, IPC_STAT, b);
  const v = new DataView(b.buffer);
  return { ...perm(v), nsems: Number(v.getBigUint64(80, true)) };
}

/** semctl(GETALL): the values of the set's semaphores. */
export function semGetAll(semid: number, nsems: number): number[] {
  const b = new Uint16Array(Math.max(1, nsems));
  syscall(SYS.semctl, semid, 0, GETALL, b);
  return [...b.subarray(0, nsems)];
}

/** semget(key, nsems, flags): the id, or -errno. */
export function semGet(key: number, nsems: number, flags: number): number {
  return Number(rawSyscall(SYS.semget, key, nsems, flags));
}

/** semctl(SETALL). */
export function semSetAll(semid: number, values: readonly number[]): void {
  syscall(SYS.semctl, semid, 0, SETALL, Uint16Array.from(values));
}

/** semctl(IPC_SET): owner and permission bits of a set. */
export function semSet(semid: number, uid: number, gid: number, mode: number): void {
  const b = new Uint8Array(SEMID_DS_SIZE);
  setPerm(new DataView(b.buffer), uid, gid, mode);
  syscall(SYS.semctl, semid, 0, IPC_SET, b);
}

const GETPID = 11;

/** semctl(GETPID): the pid of the last semop on semaphore `num` of set `semid`, or -errno. */
export function semGetPid(semid: number, num: number): number {
  return Number(rawSyscall(SYS.semctl, semid, num, GETPID, 0));
}

/** How many objects of each kind cryo's IPC namespace holds now. */
export interface IpcObjectCounts {
  sem: number;
  msg: number;
  shm: number;
}

const SEM_INFO = 19;
const MSG_INFO = 12;
const SHM_INFO = 14;

/**
 * The semaphore sets, message queues and shm segments that exist in cryo's
 * IPC namespace (semctl SEM_INFO's semusz, msgctl MSG_INFO's msgpool,
 * shmctl SHM_INFO's used_ids: three syscalls, no /proc table read);
 * undefined when one of them fails (a kernel without System V IPC).
 */
export function ipcObjectCounts(): IpcObjectCounts | undefined {
  const b = new Uint8Array(64); // struct seminfo (40 bytes), msginfo (32), shm_info (48)
  const v = new DataView(b.buffer);
  if (rawSyscall(SYS.semctl, 0, 0, SEM_INFO, b) < 0n) return undefined;
  const sem = v.getInt32(28, true); // semusz
  if (rawSyscall(SYS.msgctl, 0, MSG_INFO, b) < 0n) return undefined;
  const msg = v.getInt32(0, true); // msgpool
  if (rawSyscall(SYS.shmctl, 0, SHM_INFO, b) < 0n) return undefined;
  const shm = v.getInt32(0, true); // used_ids
  return { sem, msg, shm };
}
