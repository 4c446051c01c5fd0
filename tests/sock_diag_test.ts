/**
 * The sock_diag codecs and dump for unix sockets (ffi/sock_diag.ts) and the
 * socket peeks (ffi/socket.ts), against sockets of this test process.
 */

import assert from "node:assert/strict";
import {
  decodeUnixDiag,
  dumpUnixSockets,
  encodeUnixDiagRequest,
  UDIAG_SHOW,
} from "../ffi/sock_diag.ts";
import { withTargetFd } from "../ffi/pidfd.ts";
import { hasPendingError, peekQueue } from "../ffi/socket.ts";
import { urgentPending } from "../ffi/net.ts";
import { withTempDir } from "./helpers/fs.ts";

Deno.test("sock_diag: the request is a 40-byte SOCK_DIAG_BY_FAMILY dump for AF_UNIX", () => {
  const req = encodeUnixDiagRequest(UDIAG_SHOW.NAME | UDIAG_SHOW.PEER, 7);
  const dv = new DataView(req.buffer);
  assert.equal(req.length, 40);
  assert.equal(dv.getUint32(0, true), 40, "nlmsg_len");
  assert.equal(dv.getUint16(4, true), 20, "SOCK_DIAG_BY_FAMILY");
  assert.equal(dv.getUint16(6, true), 0x301, "NLM_F_REQUEST | NLM_F_DUMP");
  assert.equal(dv.getUint32(8, true), 7, "seq");
  assert.equal(req[16], 1, "AF_UNIX");
  assert.equal(dv.getUint32(20, true), 0xffffffff, "every state");
  assert.equal(dv.getUint32(28, true), UDIAG_SHOW.NAME | UDIAG_SHOW.PEER);
});

Deno.test("sock_diag: an answer with its attributes decodes", () => {
  const body = new Uint8Array(16 + 12 + 8 + 12 + 8);
  const dv = new DataView(body.buffer);
  body[0] = 1; // family
  body[1] = 5; // SOCK_SEQPACKET
  body[2] = 10; // listening
  dv.setUint32(4, 4242, true);
  let o = 16;
  const attr = (type: number, payload: Uint8Array) => {
    dv.setUint16(o, 4 + payload.length, true);
    dv.setUint16(o + 2, type, true);
    body.set(payload, o + 4);
    o += (4 + payload.length + 3) & ~3;
  };
  attr(0, new Uint8Array([0, 0x61, 0x62])); // NAME: abstract "\0ab"
  attr(3, new Uint8Array(new Uint32Array([7]).buffer)); // ICONS
  attr(4, new Uint8Array(new Uint32Array([1, 16]).buffer)); // RQLEN
  attr(6, new Uint8Array([2])); // SHUTDOWN
  const d = decodeUnixDiag(body.subarray(0, o));
  assert.equal(d.ino, 4242);
  assert.equal(d.type, 5);
  assert.equal(d.state, 10);
  assert.deepEqual([...d.name!], [0, 0x61, 0x62]);
  assert.deepEqual(d.icons, [7]);
  assert.deepEqual(d.rqlen, { rqueue: 1, wqueue: 16 });
  assert.equal(d.shutdown, 2);
});

Deno.test("sock_diag: the dump finds a listener of this process by its path; peeks read nothing off", async () => {
  await withTempDir("cryo-sockdiag-", async (dir) => {
    const path = `${dir}/l.sock`;
    const listener = Deno.listen({ transport: "unix", path });
    const client = await Deno.connect({ transport: "unix", path });
    const server = await listener.accept();
    try {
      await client.write(new TextEncoder().encode("peeked, not read"));
      const found = [...dumpUnixSockets().values()].find((d) =>
        d.state === 10 && d.name && new TextDecoder().decode(d.name).startsWith(path)
      );
      assert.ok(found, "the listener is in the dump");
      assert.equal(found.vfs?.ino, Deno.statSync(path).ino! % 2 ** 32);
      // Deno does not give fds out: the accepted socket's fd is found through /proc.
      const fds = [...Deno.readDirSync("/proc/self/fd")].map((e) => Number(e.name));
      const accepted = [...dumpUnixSockets().values()].find((d) =>
        d.state === 1 && d.name && new TextDecoder().decode(d.name).startsWith(path) &&
        (d.rqlen?.rqueue ?? 0) === 16
      );
      assert.ok(accepted, "the accepted socket with 16 bytes queued");
      const ownFd = fds.find((n) => {
        try {
          return Deno.readLinkSync(`/proc/self/fd/${n}`) === `socket:[${accepted.ino}]`;
        } catch {
          return false;
        }
      });
      assert.ok(ownFd !== undefined);
      withTargetFd(Deno.pid, ownFd, (copy) => {
        const q = peekQueue(copy, true, 16);
        assert.equal(new TextDecoder().decode(q[0].data), "peeked, not read");
        assert.ok(!q[0].credPid, "no credentials: nobody asked for them when it was sent");
        assert.equal(urgentPending(copy), false);
        assert.equal(hasPendingError(copy), false);
      });
      const buf = new Uint8Array(64);
      const n = await server.read(buf);
      assert.equal(new TextDecoder().decode(buf.subarray(0, n!)), "peeked, not read");
    } finally {
      client.close();
      server.close();
      listener.close();
    }
  });
});
