/**
 * TCP connections seen through /proc, for tests that must act on a
 * connection synchronously (a Deno.Conn only writes asynchronously).
 *
 * @module
 */

/** The rows of /proc/<pid>/net/tcp: local and remote port, receive queue, inode. */
function tcpRows(pid: number | "self") {
  return Deno.readTextFileSync(`/proc/${pid}/net/tcp`).split("\n").slice(1)
    .map((l) => l.trim().split(/\s+/)).filter((f) => f.length > 9)
    .map((f) => ({
      localPort: parseInt(f[1].split(":")[1], 16),
      remotePort: parseInt(f[2].split(":")[1], 16),
      receiveQueue: parseInt(f[4].split(":")[1], 16),
      inode: Number(f[9]),
    }));
}

/**
 * Bytes received and not yet read on the IPv4 connection from `localPort`
 * to `remotePort` in the network namespace of `pid`; throws when absent.
 */
export function tcpReceiveQueue(pid: number, localPort: number, remotePort: number): number {
  const row = tcpRows(pid).find((r) => r.localPort === localPort && r.remotePort === remotePort);
  if (!row) throw new Error(`no tcp connection ${localPort} -> ${remotePort} seen by ${pid}`);
  return row.receiveQueue;
}

/** This process's fd of its IPv4 connection from `localPort` to `remotePort`. */
export function ownSocketFd(localPort: number, remotePort: number): number {
  const row = tcpRows("self").find((r) => r.localPort === localPort && r.remotePort === remotePort);
  if (!row) throw new Error(`no tcp connection ${localPort} -> ${remotePort} here`);
  for (const e of Deno.readDirSync("/proc/self/fd")) {
    try {
      if (Deno.readLinkSync(`/proc/self/fd/${e.name}`) === `socket:[${row.inode}]`) {
        return Number(e.name);
      }
    } catch { /* closed meanwhile */ }
  }
  throw new Error(`the socket of ${localPort} -> ${remotePort} has no fd here`);
}
