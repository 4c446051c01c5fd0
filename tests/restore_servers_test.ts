/**
 * Real servers across dump, kill and restore, each with a client
 * connection living in this test process (outside the tree, so the dumps
 * use the "tcp-established" opt-in) that is used before and after:
 *
 * - a `Deno.serve` HTTP server: the same keep-alive connection gets the
 *   next response, new clients are served (needs unix socketpairs, which
 *   Deno's runtime holds: ignored while the support table refuses them);
 * - a Python `ThreadingHTTPServer` (keep-alive, one thread per
 *   connection): the same, without unix sockets (skipped without python3);
 * - redis-server: SET before, GET after on the same RESP connection, and a
 *   new client (skipped without redis-server).
 */

import assert from "node:assert/strict";
import { SUPPORT_TABLE } from "../engine/support.ts";
import { dumpKillRestore } from "./helpers/roundtrip.ts";
import { startTarget, type Target, withTargets } from "./helpers/targets.ts";
import { tempDir } from "./helpers/fs.ts";
import { tcpReceiveQueue } from "./helpers/tcp.ts";
import { deadlineIn, waitUntil } from "./helpers/wait.ts";
import { findProgram, freePort, readUntil, waitListening } from "./helpers/servers.ts";

const OPT_IN = { optIns: ["tcp-established"] };

/** conn.read(buf), failing once `deadline` (a Date.now() value) passes with nothing read. */
async function readWithin(
  conn: Deno.Conn,
  buf: Uint8Array,
  deadline: number,
  progress = () => "",
): Promise<number | null> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`the server went silent (${progress()})`)),
      Math.max(0, deadline - Date.now()),
    );
  });
  try {
    return await Promise.race([conn.read(buf), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Sends one HTTP/1.1 keep-alive GET on `conn`; returns the response body. */
async function httpGet(conn: Deno.Conn, path: string): Promise<string> {
  await conn.write(
    new TextEncoder().encode(
      `GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n`,
    ),
  );
  const text = await readUntil(conn, (t) => {
    const end = t.indexOf("\r\n\r\n");
    if (end < 0) return false;
    const len = Number(t.slice(0, end).match(/content-length: *(\d+)/i)?.[1] ?? NaN);
    return t.length >= end + 4 + len;
  });
  assert.match(text, /^HTTP\/1\.[01] 200/, text);
  return text.slice(text.indexOf("\r\n\r\n") + 4);
}

/**
 * The HTTP round trip: a keep-alive connection gets /a, the server is
 * dumped (killed) and restored, the same connection gets /b, a new client
 * gets /c; the server counts requests, so each body names its number.
 */
async function httpRoundTrip(t: Target, port: number): Promise<void> {
  await waitListening(t, port);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    assert.equal(await httpGet(conn, "/a"), "hello 1 /a");
    await dumpKillRestore(t, OPT_IN, OPT_IN);
    assert.equal(await httpGet(conn, "/b"), "hello 2 /b");
    const fresh = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      assert.equal(await httpGet(fresh, "/c"), "hello 3 /c");
    } finally {
      fresh.close();
    }
    assert.equal(await httpGet(conn, "/d"), "hello 4 /d");
  } finally {
    conn.close();
  }
  assert.equal(t.poll(), undefined, `the restored server exited:\n${t.output()}`);
}

/** Whether this cryo restores unix socketpairs (Deno's runtime holds some). */
const unixSockets = SUPPORT_TABLE.some((r) =>
  r.id.startsWith("socket.unix") && r.support === "saved"
);

Deno.test({
  name: "a Deno.serve HTTP server keeps its keep-alive client and serves new ones after restore",
  ignore: !unixSockets,
  fn: withTargets(async () => {
    const work = await tempDir("cryo-deno-serve-");
    const script = `${work}/server.js`;
    await Deno.writeTextFile(
      script,
      `let n = 0;
Deno.serve({ hostname: "127.0.0.1", port: Number(Deno.args[0]), onListen() {} },
  (req) => new Response("hello " + ++n + " " + new URL(req.url).pathname));
`,
    );
    const port = freePort();
    // Its own DENO_DIR: the cache files it maps (sqlite -shm) must not change before the restore,
    // and this test's own Deno writes to the shared ones.
    const t = await startTarget("/usr/bin/env", [
      `DENO_DIR=${work}/deno-dir`,
      Deno.execPath(),
      "run",
      "-A",
      "--no-config",
      script,
      String(port),
    ], { cwd: work });
    await httpRoundTrip(t, port);
  }),
});

const python = findProgram("python3", "/usr/bin/python3");

Deno.test({
  name:
    "a Python ThreadingHTTPServer keeps its keep-alive client and serves new ones after restore",
  ignore: !python,
  fn: withTargets(async () => {
    const work = await tempDir("cryo-py-http-");
    const script = `${work}/server.py`;
    await Deno.writeTextFile(
      script,
      `import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
n = 0
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        global n
        n += 1
        body = f"hello {n} {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
`,
    );
    const port = freePort();
    const t = await startTarget(python!, [script, String(port)], { cwd: work });
    await httpRoundTrip(t, port);
  }),
});

const redis = findProgram("redis-server", "/usr/bin/redis-server");

/**
 * Starts redis-server on a free loopback port, persistence off, its
 * directory a new temporary one (`prefix`), with `extra` options; returns
 * it with a client connection.
 */
async function startRedis(prefix: string, extra: string[] = []) {
  const work = await tempDir(prefix);
  const port = freePort();
  const t = await startTarget(redis!, [
    ...["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    ...extra,
    ...["--dir", work],
  ]);
  await waitListening(t, port);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  return { t, work, port, conn };
}
if (!redis) {
  console.error(
    "restore_servers_test: redis-server not found (apt-get install -y redis-server); skipping",
  );
}

/** One RESP command as an array of bulk strings. */
function resp(...words: string[]): Uint8Array {
  const parts = words.map((w) => `$${new TextEncoder().encode(w).length}\r\n${w}\r\n`);
  return new TextEncoder().encode(`*${words.length}\r\n${parts.join("")}`);
}

async function command(conn: Deno.Conn, ...words: string[]): Promise<string> {
  await conn.write(resp(...words));
  return await readUntil(conn, (t) => {
    if (!t.endsWith("\r\n")) return false;
    const m = t.match(/^\$(\d+)\r\n/);
    return !m || t.length >= m[0].length + Number(m[1]) + 2;
  });
}

Deno.test({
  name: "redis-server keeps a client connection across the checkpoint (SET before, GET after)",
  ignore: !redis,
  fn: withTargets(async () => {
    const { t, port, conn } = await startRedis("cryo-redis-");
    try {
      assert.equal(await command(conn, "SET", "cryo:key", "frozen value"), "+OK\r\n");
      await dumpKillRestore(t, OPT_IN, OPT_IN);
      assert.equal(await command(conn, "GET", "cryo:key"), "$12\r\nfrozen value\r\n");
      const fresh = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        assert.equal(await command(fresh, "GET", "cryo:key"), "$12\r\nfrozen value\r\n");
        assert.equal(await command(fresh, "INCR", "cryo:n"), ":1\r\n");
      } finally {
        fresh.close();
      }
      assert.equal(await command(conn, "INCR", "cryo:n"), ":2\r\n");
    } finally {
      conn.close();
    }
    assert.equal(t.poll(), undefined, `the restored redis exited:\n${t.output()}`);
  }),
});

Deno.test({
  name:
    "python3 -m http.server goes on with a download it was in the middle of, and serves new clients",
  // Once seen hanging in a CI-like run. A cause found since (restore_tcp_window_test.ts): the
  // restored socket's send buffer, capped by net.core.wmem_max, could not take the megabytes of
  // unsent bytes and their write blocked (engine/fds/tcp.ts emitQueueBuffer). Every wait below
  // has a deadline: a silent server fails the test instead of hanging it.
  ignore: !python,
  fn: withTargets(async () => {
    const work = await tempDir("cryo-py-download-");
    // 8 MiB that no run of bytes repeats in: a lost, repeated or reordered chunk shows.
    const big = new Uint8Array(8 << 20);
    const view = new DataView(big.buffer);
    for (let i = 0; i < big.length; i += 4) view.setUint32(i, i * 2654435761 >>> 0);
    await Deno.writeFile(`${work}/big.bin`, big);
    await Deno.writeTextFile(`${work}/small.txt`, "small\n");
    const port = freePort();
    const t = await startTarget(python!, [
      "-m",
      "http.server",
      "--bind",
      "127.0.0.1",
      "--directory",
      work,
      String(port),
    ], { cwd: work });
    await waitListening(t, port);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await conn.write(new TextEncoder().encode("GET /big.bin HTTP/1.0\r\nHost: x\r\n\r\n"));
      // Read the first 64 KiB, then stop reading: the server blocks in send() with full queues.
      const got: Uint8Array[] = [];
      let total = 0;
      const buf = new Uint8Array(65536);
      while (total < 65536) {
        const n = await readWithin(conn, buf, deadlineIn(30000));
        if (n === null) throw new Error("closed early");
        got.push(buf.slice(0, n));
        total += n;
      }
      // Our receive queue filled up (it stopped growing): the rest waits in the server's send
      // queue and in its send().
      const mine = (conn.localAddr as Deno.NetAddr).port;
      let last = -1;
      await waitUntil("a full receive queue", async () => {
        const now = tcpReceiveQueue(Deno.pid, mine, port);
        const full = now > 0 && now === last;
        last = now;
        if (!full) await new Promise((r) => setTimeout(r, 200));
        return full;
      });
      await dumpKillRestore(t, OPT_IN, OPT_IN);
      const fresh = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        await fresh.write(new TextEncoder().encode("GET /small.txt HTTP/1.0\r\nHost: x\r\n\r\n"));
        const reply = await readUntil(fresh, (s) => s.endsWith("small\n"));
        assert.match(reply, /^HTTP\/1\.0 200/);
      } finally {
        fresh.close();
      }
      const deadline = deadlineIn(60000);
      for (;;) {
        const n = await readWithin(conn, buf, deadline, () => `${total} bytes read`);
        if (n === null) break;
        got.push(buf.slice(0, n));
        total += n;
      }
      const all = new Uint8Array(total);
      let at = 0;
      for (const g of got) {
        all.set(g, at);
        at += g.length;
      }
      const text = new TextDecoder("latin1").decode(all.subarray(0, 4096));
      const head = text.indexOf("\r\n\r\n") + 4;
      assert.match(text, /^HTTP\/1\.0 200/);
      assert.equal(total - head, big.length, "the whole file, no more, no less");
      assert.ok(
        all.subarray(head).every((b, i) => b === big[i]),
        "the file's bytes in order",
      );
    } finally {
      conn.close();
    }
    assert.equal(t.poll(), undefined, `the restored server exited:\n${t.output()}`);
  }),
});

const node = findProgram("node", "/usr/bin/node");

Deno.test({
  name:
    "a Node.js cluster (a primary handing connections to two workers) keeps its client and serves new ones",
  ignore: !node,
  fn: withTargets(async () => {
    const work = await tempDir("cryo-node-cluster-");
    const script = `${work}/cluster.js`;
    await Deno.writeTextFile(
      script,
      `const cluster = require("node:cluster");
const http = require("node:http");
if (cluster.isPrimary) {
  for (let i = 0; i < 2; i++) cluster.fork();
} else {
  let n = 0;
  const s = http.createServer((req, res) => res.end("hello " + ++n + " " + req.url));
  s.keepAliveTimeout = 600000;
  s.listen(Number(process.argv[2]), "127.0.0.1", () => console.log("worker listening"));
}
`,
    );
    const port = freePort();
    const t = await startTarget(node!, [script, String(port)], { cwd: work });
    await t.waitFor(/worker listening\n(.|\n)*worker listening\n/, 30000);
    await waitListening(t, port);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      const first = await httpGet(conn, "/a");
      assert.match(first, /^hello 1 \/a$/);
      const { tree } = await dumpKillRestore(t, OPT_IN, OPT_IN);
      assert.equal(tree.pids.length, 3, `restored ${tree.pids}`);
      assert.equal(await httpGet(conn, "/b"), "hello 2 /b", "the same worker, its counter on");
      for (let i = 0; i < 3; i++) {
        const fresh = await Deno.connect({ hostname: "127.0.0.1", port });
        try {
          assert.match(await httpGet(fresh, "/c"), /^hello \d+ \/c$/);
        } finally {
          fresh.close();
        }
      }
    } finally {
      conn.close();
    }
    assert.equal(t.poll(), undefined, `the restored primary exited:\n${t.output()}`);
  }),
});

Deno.test({
  name:
    "redis-server in the middle of a BGSAVE (its forked child writing) finishes the save after restore",
  ignore: !redis,
  fn: withTargets(async () => {
    const { t, work, conn } = await startRedis("cryo-redis-bgsave-", ["--rdbcompression", "no"]);
    try {
      const keys = 3000;
      const batch = [];
      for (let i = 0; i < keys; i++) batch.push(resp("SET", `k${i}`, `value ${i} `.repeat(20)));
      await conn.write(new Uint8Array(batch.flatMap((b) => [...b])));
      await readUntil(conn, (s) => s.split("+OK\r\n").length - 1 === keys);
      // 1 ms per key: the child writes for ~3 s.
      assert.equal(await command(conn, "CONFIG", "SET", "rdb-key-save-delay", "1000"), "+OK\r\n");
      assert.equal(await command(conn, "BGSAVE"), "+Background saving started\r\n");
      const info = async () => await command(conn, "INFO", "persistence");
      await waitUntil(
        "the save's child",
        async () => /rdb_bgsave_in_progress:1/.test(await info()),
      );
      const { tree } = await dumpKillRestore(t, OPT_IN, OPT_IN);
      assert.equal(tree.pids.length, 2, `restored ${tree.pids}: the server and its saving child`);
      await waitUntil("the save's end", async () => /rdb_bgsave_in_progress:0/.test(await info()));
      assert.match(await info(), /rdb_last_bgsave_status:ok/);
      const rdb = await Deno.readFile(`${work}/dump.rdb`);
      assert.equal(new TextDecoder().decode(rdb.subarray(0, 5)), "REDIS");
      assert.equal(await command(conn, "DBSIZE"), `:${keys}\r\n`);
    } finally {
      conn.close();
    }
  }),
});
