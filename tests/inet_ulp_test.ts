/**
 * TCP sockets with an upper layer protocol (TCP_ULP, kernel TLS) are
 * refused (engine/fds/inet.ts `optionProblem`): their keys and record state
 * cannot be read, and a plain socket restored in their place would send in
 * the clear. This kernel has no ULP module to attach, so the decision is
 * checked on the values getsockopt gives, and a real connection's value
 * (none) is checked not to be refused.
 */

import assert from "node:assert/strict";
import { optionProblem, ulpProblem } from "../engine/fds/inet.ts";
import { getsockoptBytes, SOL } from "../ffi/net.ts";
import { TCP } from "../ffi/tcp_repair.ts";

Deno.test("TCP_ULP: a named upper layer protocol is refused, none or not TCP is not", () => {
  const name = (s: string) => {
    const b = new Uint8Array(16);
    b.set(new TextEncoder().encode(s));
    return b;
  };
  assert.equal(
    ulpProblem(name("tls")),
    `an upper layer protocol on the connection (TCP_ULP "tls")`,
  );
  assert.equal(ulpProblem(name("")), null);
  assert.equal(ulpProblem(new Uint8Array(0)), null);
  assert.equal(ulpProblem(-95), null); // EOPNOTSUPP: a UDP socket
});

Deno.test("TCP_ULP: a plain connection has none and is not refused", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const server = await listener.accept();
  try {
    // Every socket fd of this process: the listener and both ends.
    const fds = [...Deno.readDirSync("/proc/self/fd")].map((e) => Number(e.name))
      .filter((fd) => {
        try {
          return Deno.readLinkSync(`/proc/self/fd/${fd}`).startsWith("socket:");
        } catch {
          return false;
        }
      });
    assert.ok(fds.length >= 3);
    for (const fd of fds) {
      const v = getsockoptBytes(fd, SOL.TCP, TCP.ULP, 16);
      if (typeof v !== "number") assert.equal(v.indexOf(0) === 0 || v.length === 0, true);
      assert.equal(optionProblem(fd), null);
    }
  } finally {
    client.close();
    server.close();
    listener.close();
  }
});
