/**
 * A TCP connection dumped with a zero window, in both directions, to a
 * peer outside the tree (the opt-in "tcp-established"), each stream then
 * checked byte for byte:
 *
 * - the target sends: its peer stopped reading (its receive window is 0),
 *   the target's send queue holds megabytes never sent and the target is
 *   blocked in send(); after restore the peer reads again and must get the
 *   whole stream, then the end of it (the target closed its socket once
 *   all was queued: FIN-WAIT-1 with data queued, an orphan);
 * - the target receives: it stopped reading, its receive queue is full (it
 *   advertised a zero window) and the peer's send queue holds the rest;
 *   after restore the target reads again, its window update must reach the
 *   peer and the whole stream arrive; the peer's MSS is 1400, and the
 *   target's segment size (TCP_MAXSEG) must be the same after restore;
 * - bytes in flight: the peer drops every segment (a classic BPF socket
 *   filter returning 0) and drains its queue, so the target sends into the
 *   drop; the dump records those bytes sent and never acknowledged, and the
 *   restored socket must retransmit them once the peer takes segments again.
 *
 * The target's buffers are set above net.core.{w,r}mem_max with
 * SO_SNDBUFFORCE / SO_RCVBUFFORCE, so a restore that gave the new socket
 * smaller buffers than the queues it must hold is caught (it used to block
 * forever writing the unsent bytes). Every wait is bounded.
 */

import assert from "node:assert/strict";
import { dumpKillRestore } from "./helpers/roundtrip.ts";
import { startTarget, type Target, withTargets } from "./helpers/targets.ts";
import { tempDir } from "./helpers/fs.ts";
import { sleep, waitUntil } from "./helpers/wait.ts";

const OPT_IN = { optIns: ["tcp-established"] };
const PY = "/usr/bin/python3";
/** Bytes of the stream: more than both ends' buffers hold together. */
const TOTAL = 40 << 20;
/** SO_SNDBUFFORCE / SO_RCVBUFFORCE of the target's end (the kernel doubles it). */
const FORCE = 8 << 20;

/** The stream: little-endian 32-bit counters, so a lost, repeated or reordered piece shows. */
const STREAM = `import array
def stream(n): return array.array("I", range(n // 4)).tobytes()
`;

/**
 * The target: listens, prints its port, accepts one connection. "send":
 * sends the stream (blocking), then shuts down and closes the socket.
 * "recv": reads 64 KiB, prints "paused", waits for the trigger file, reads
 * the rest to the end and prints whether it is the stream.
 */
const TARGET = `${STREAM}
import os, socket, sys, time
mode, trigger, total, force = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
data = stream(total)
l = socket.socket()
l.bind(("127.0.0.1", 0))
if mode == "recv": l.setsockopt(socket.SOL_SOCKET, 33, force)  # SO_RCVBUFFORCE, inherited
l.listen()
print("port", l.getsockname()[1], flush=True)
a, _ = l.accept()
if mode != "recv":
    a.setsockopt(socket.SOL_SOCKET, 32, force)  # SO_SNDBUFFORCE
    a.sendall(data)
    a.shutdown(socket.SHUT_WR)
    a.close()
    print("sent all", flush=True)
else:
    got = bytearray()
    while len(got) < 65536: got += a.recv(65536)
    print("mss", a.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG), flush=True)
    print("paused", flush=True)
    while not os.path.exists(trigger): time.sleep(0.01)
    print("mss-after", a.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG), flush=True)
    a.settimeout(60)
    t0 = time.monotonic()
    while True:
        b = a.recv(1 << 20)
        if not b: break
        got += b
    print("read in %.3f s" % (time.monotonic() - t0), flush=True)
    ok = bytes(got) == data
    print("check recv-stream", "pass" if ok else "FAIL got %d of %d bytes" % (len(got), total), flush=True)
time.sleep(600)
`;

/**
 * The peer (outside the tree): connects with a small receive buffer.
 * "send" (the target sends): reads 64 KiB, prints "paused", waits for the
 * trigger, reads to the end and prints whether it is the stream. "recv":
 * sends the stream, shuts down, prints "sent all".
 */
const PEER = `${STREAM}
import ctypes, os, socket, struct, sys, time
mode, port, trigger, total = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
data = stream(total)
c = socket.socket()
c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
# An MSS below loopback's: the target's segment size (TCP_MAXSEG) must be the same after restore.
if mode == "recv": c.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1400)
c.connect(("127.0.0.1", port))
c.settimeout(120)
if mode != "recv":
    got = bytearray()
    while len(got) < 65536: got += c.recv(65536)
    print("paused", flush=True)
    if mode == "lost":
        while not os.path.exists(trigger + "-drop"): time.sleep(0.01)
        # A classic BPF filter returning 0: every segment from the target is dropped unseen.
        drop = (ctypes.c_ubyte * 8)(*struct.pack("<HBBI", 0x06, 0, 0, 0))
        c.setsockopt(socket.SOL_SOCKET, 26, struct.pack("<HxxxxxxQ", 1, ctypes.addressof(drop)))
        c.setblocking(False)
        try:
            while True: got += c.recv(1 << 20)
        except BlockingIOError: pass
        c.setblocking(True)
        c.settimeout(120)
        print("drained", flush=True)
    while not os.path.exists(trigger): time.sleep(0.01)
    if mode == "lost": c.setsockopt(socket.SOL_SOCKET, 27, 0)  # SO_DETACH_FILTER
    while True:
        b = c.recv(1 << 20)
        if not b: break
        got += b
    ok = bytes(got) == data
    print("check send-stream", "pass" if ok else "FAIL got %d of %d bytes" % (len(got), total), flush=True)
else:
    c.sendall(data)
    c.shutdown(socket.SHUT_WR)
    print("sent all", flush=True)
    time.sleep(600)
`;

/** The /proc/net/tcp rows of IPv4 TCP sockets on `port` (either end). */
function rowsOn(port: number): string[][] {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, "0")} `;
  return Deno.readTextFileSync("/proc/net/tcp").split("\n").slice(1)
    .filter((l) => l.includes(hex)).map((l) => l.trim().split(/\s+/));
}

/**
 * Seconds until the zero-window probe of the peer's end of the connection
 * to `port` (its persist timer, "tr" 4 in /proc/net/tcp), or 0 if none is
 * armed.
 */
function peerProbeIn(port: number): number {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  const row = rowsOn(port).find((f) => f[2].endsWith(hex));
  const [tr, when] = (row?.[5] ?? "0:0").split(":");
  return tr === "04" ? parseInt(when, 16) / 100 : 0;
}

/** The retransmit timer ("tr" 1) is armed on the target's end of the connection to `port`. */
function targetRetransmits(port: number): boolean {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  const row = rowsOn(port).find((f) => f[1].endsWith(hex) && f[3] === "01"); // ESTABLISHED
  return row?.[5].startsWith("01:") ?? false;
}

/**
 * Waits until the connection's queues stop changing (both ends blocked by
 * a zero window). With `quietPeer`, also until the peer's next zero-window
 * probe is at least 4 s away: a probe arriving between the dump (which
 * drops the connection silently) and the restore finds no socket and is
 * answered with a reset (a gap cryo does not close: docs/ARCHITECTURE.md).
 * The peer backs off, doubling the interval at each probe.
 */
async function waitStuck(port: number, peer: Target, t: Target, quietPeer: boolean): Promise<void> {
  let last = "";
  await waitUntil("both ends of the connection blocked", async () => {
    const now = rowsOn(port).map((f) => f[4]).sort().join(",");
    const stuck = now === last && now.split(",").length >= 2 && !/^0+:0+,0+:0+$/.test(now) &&
      (!quietPeer || peerProbeIn(port) >= 4);
    last = now;
    if (!stuck) await sleep(300);
    return stuck;
  }, 90000).catch((e) => {
    throw new Error(`${e.message}\npeer: ${peer.output()}\ntarget: ${t.output()}`);
  });
}

async function roundTrip(mode: "send" | "recv" | "lost"): Promise<void> {
  const work = await tempDir("cryo-tcpwin-");
  const trigger = `${work}/go`;
  const t = await startTarget(PY, ["-c", TARGET, mode, trigger, String(TOTAL), String(FORCE)]);
  const port = Number((await t.waitFor(/^port (\d+)$/m, 30000))[1]);
  const peer = await startTarget(PY, ["-c", PEER, mode, String(port), trigger, String(TOTAL)]);
  await (mode === "recv" ? t : peer).waitFor(/^paused$/m, 30000);
  await waitStuck(port, peer, t, mode === "recv");
  if (mode === "lost") {
    // The peer drops what arrives and reads its queue: its window update lets the target send
    // again, into the drop. The dump finds those bytes sent and never acknowledged.
    await Deno.writeTextFile(`${trigger}-drop`, "");
    await peer.waitFor(/^drained$/m, 30000);
    await waitUntil("the target retransmitting", () => targetRetransmits(port), 30000)
      .catch((e) => {
        throw new Error(`${e.message}: ${JSON.stringify(rowsOn(port))}\npeer: ${peer.output()}`);
      });
  }
  await dumpKillRestore(t, OPT_IN, OPT_IN);
  const probeIn = peerProbeIn(port);
  await Deno.writeTextFile(trigger, "");
  const reader = mode === "recv" ? t : peer;
  const m = await reader.waitFor(/^check \S+ (.*)$/m, 60000);
  assert.equal(
    m[1],
    "pass",
    `reader: ${reader.output()}\nwriter: ${(mode === "recv" ? peer : t).output()}`,
  );
  if (mode === "recv") {
    await peer.waitFor(/^sent all$/m, 30000);
    const mss = t.output().match(/^mss (\d+)$/m)?.[1];
    assert.equal(t.output().match(/^mss-after (\d+)$/m)?.[1], mss, "TCP_MAXSEG (mss_cache)");
    // The restored socket announced its open window itself, as soon as the target read: the
    // stream did not wait for the peer's next zero-window probe.
    const took = Number(t.output().match(/^read in ([\d.]+) s$/m)?.[1]);
    if (probeIn >= 1.5) {
      assert.ok(
        took < probeIn,
        `read in ${took} s: waited for the peer's probe (due in ${probeIn} s)`,
      );
    }
  }
  assert.equal(t.poll(), undefined, `the restored target exited:\n${t.output()}`);
}

Deno.test(
  "tcp window: a target blocked sending to a peer whose window is zero goes on after restore, the whole stream and its end arrive",
  withTargets(() => roundTrip("send")),
);

Deno.test(
  "tcp window: a target whose full receive queue closed its window reads on after restore, its window update reaches the peer",
  withTargets(() => roundTrip("recv")),
);

Deno.test(
  "tcp window: bytes the target sent that never reached the peer (in flight at the dump) are retransmitted by the restored socket",
  withTargets(() => roundTrip("lost")),
);
