/**
 * Sockets in real programs across dump, kill and restore:
 *
 * - a pre-fork server (tests/targets/rt_prefork.c): one listener shared by
 *   the parent and three workers blocked in accept(), a TCP connection
 *   inside the tree, a UDP, a unix and a route netlink socket each shared by two processes; after
 *   the restore every holder has the same socket (inode, port) and this
 *   test's clients are served by the workers;
 * - sockets of a user other than root (tests/targets/rt_sockowner.c,
 *   running as nobody): a TCP listener, a UDP socket, a unix socketpair, a
 *   bound unix socket and a route netlink socket come back owned by that user (fstat, and
 *   /proc/net/tcp's uid column read here) and still work.
 */

import assert from "node:assert/strict";
import { assertChecksPassed } from "./helpers/checks.ts";
import { dumpKillRestore, startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { checkpoint } from "../engine/dump/mod.ts";
import { UnsupportedError } from "../engine/errors.ts";
import { startTarget, withTargets } from "./helpers/targets.ts";
import { pathExists, tempDir } from "./helpers/fs.ts";

/** Sends `request` to 127.0.0.1:`port` and reads the reply until the server closes. */
async function ask(port: number, request: string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(new TextEncoder().encode(request));
    const buf = new Uint8Array(256);
    let text = "";
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) return text;
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
  } finally {
    conn.close();
  }
}

Deno.test(
  "a pre-fork server's listener, and a TCP connection, a UDP, a unix and a netlink socket shared by two processes, are one socket each after restore; the workers serve",
  withTargets(async () => {
    const { t, trigger, ready } = await startTriggered(
      "rt_prefork",
      /^ready pid=(\d+) port=(\d+) udp=(\d+)$/m,
    );
    const port = Number(ready[2]);
    const { tree } = await dumpKillRestore(t);
    assert.equal(tree.pids.length, 5, "the parent, three workers and the pair child");
    await Deno.writeTextFile(trigger, "");
    await t.waitFor(/^compared$/m, 30000); // the parent compared its sockets with the workers'
    const workers = new Set<number>();
    for (let i = 0; i < 6; i++) {
      const reply = await ask(port, "hello\n");
      const pid = Number(reply.match(/^served (\d+)$/m)?.[1]);
      assert.ok(tree.pids.includes(pid), `served by ${pid}, not a process of the tree: ${reply}`);
      workers.add(pid);
    }
    // Each worker exits after one "quit": three quits reach the three workers.
    for (let i = 0; i < 3; i++) {
      const pid = Number((await ask(port, "quit\n")).match(/^served (\d+)$/m)?.[1]);
      workers.add(pid);
    }
    assert.equal(workers.size, 3, `served by ${[...workers].join(", ")}`);
    assertChecksPassed(t, [
      "worker1-listener",
      "worker2-listener",
      "worker3-listener",
      "worker1-port",
      "worker2-port",
      "worker3-port",
      "pair-child-client",
      "pair-child-accepted",
      "pair-child-udp",
      "pair-child-unix",
      "pair-child-netlink",
      "pair-child-netlink-port",
      "pair-child-read",
      "pair-child-bye",
      "parent-listener-1",
      "parent-listener-2",
      "parent-listener-3",
      "parent-port",
      "parent-client",
      "parent-accepted",
      "parent-udp",
      "parent-unix",
      "parent-netlink",
      "parent-unix-read",
      "parent-read",
      "parent-queued",
      "parent-dgram",
      "parent-udp-drained",
      "worker1",
      "worker2",
      "worker3",
      "pair-child",
    ], await t.wait(30000));
  }),
);

/** What tests/targets/rt_sockowner.c checks after the trigger. */
const OWNER_CHECKS = [
  "tcp-owner",
  "udp-owner",
  "pair-owner-0",
  "pair-owner-1",
  "bound-owner",
  "netlink-owner",
  "bound-file-owner",
  "pair-peer-credentials",
  "pair-peer-groups",
  "tcp-connect",
  "tcp-accept",
  "udp-works",
  "pair-works",
  "bound-works",
];

/** The "uid" column of /proc/<pid>/net/<table> for socket inode `ino`. */
function socketUid(pid: number, table: string, ino: number): number | undefined {
  for (const line of Deno.readTextFileSync(`/proc/${pid}/net/${table}`).split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (Number(f[9]) === ino) return Number(f[7]);
  }
  return undefined;
}

Deno.test(
  "sockets of a user other than root come back owned by that user (fstat, /proc/net/tcp) and work",
  withTargets(async () => {
    const work = await tempDir("cryo-sockowner-");
    await Deno.chmod(work, 0o777);
    const trigger = `${work}/go`; // where nobody can see it
    const t = await startTarget("rt_sockowner", [trigger, work]);
    const ready = await t.waitFor(/^ready pid=\d+ tcp=(\d+) udp=(\d+) port=\d+$/m);
    const fdIno = (fd: string) => Deno.statSync(`/proc/${t.pid}/fd/${fd}`).ino!;
    assert.equal(socketUid(t.pid, "tcp", fdIno(ready[1])), 65534, "before the dump");
    await dumpKillRestore(t);
    assert.equal(socketUid(t.pid, "tcp", fdIno(ready[1])), 65534, "the listener's sk_uid");
    assert.equal(socketUid(t.pid, "udp", fdIno(ready[2])), 65534, "the UDP socket's sk_uid");
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, OWNER_CHECKS, await t.wait());
  }),
);

Deno.test(
  "unix sockets of different owners linked together, peer credentials not the owner's and queued bytes with nobody's credentials are refused by name; the process runs on",
  withTargets(async () => {
    const work = await tempDir("cryo-sockowner-");
    await Deno.chmod(work, 0o777);
    const trigger = `${work}/go`;
    const t = await startTarget("rt_sockowner", [trigger, work, "refuse"]);
    await t.waitFor(/^ready pid=\d+ /m);
    const dir = await tempImageDir();
    await assert.rejects(
      () => checkpoint(t.pid, { dir }),
      (e: unknown) => {
        assert.ok(e instanceof UnsupportedError, String(e));
        assert.match(e.message, /sockets of different owners \(0:0, 65534:65534\) linked together/);
        assert.match(e.message, /peer credentials 0:0 would not come back/);
        assert.match(e.message, /queued credentials 65534:65534 would not come back/);
        return true;
      },
    );
    assert.equal(pathExists(dir), false, "an image was left behind");
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, [...OWNER_CHECKS, "refuse-drain"], await t.wait());
  }),
);
