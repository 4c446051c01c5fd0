/**
 * Real programs from Debian's packages across dump, kill and restore, each
 * checked from outside (skipped, with a message, when not installed):
 *
 * - memcached (threads, libevent): a client's SET before, GET on the same
 *   connection after, and a new client;
 * - lighttpd: a keep-alive client gets a file before and after, and a new
 *   client is served;
 * - dnsmasq: answers DNS over UDP before and after;
 * - the sqlite3 shell in the middle of a transaction (its input a FIFO):
 *   the write lock is held again after the restore, and the commit lands.
 *
 * The clients live in this test process, outside the tree, so the dumps of
 * servers with a connection use the "tcp-established" opt-in.
 */

import assert from "node:assert/strict";
import { dumpKillRestore } from "./helpers/roundtrip.ts";
import { cleanupTargets, startTarget, withTargets } from "./helpers/targets.ts";
import { tempDir } from "./helpers/fs.ts";
import { findProgram, freePort, readUntil, waitListening } from "./helpers/servers.ts";
import { runCommand } from "./helpers/commands.ts";
import { waitUntil } from "./helpers/wait.ts";

const OPT_IN = { optIns: ["tcp-established"] };

/** Logs once why a test is skipped. */
function need(name: string, pkg: string, ...candidates: string[]): string | undefined {
  const path = findProgram(name, ...candidates);
  if (!path) {
    console.error(`restore_debian_test: ${name} not found (apt-get install -y ${pkg}); skipping`);
  }
  return path;
}

const memcached = need("memcached", "memcached", "/usr/bin/memcached");

/** Sends `text` and reads until the reply ends with `end`. */
async function exchange(conn: Deno.Conn, text: string, end: string): Promise<string> {
  await conn.write(new TextEncoder().encode(text));
  return await readUntil(conn, (t) => t.endsWith(end));
}

Deno.test({
  name: "memcached keeps a client connection and its items across the checkpoint",
  ignore: !memcached,
  fn: withTargets(async () => {
    const port = freePort();
    const t = await startTarget(memcached!, [
      "-p",
      String(port),
      "-U",
      "0",
      "-l",
      "127.0.0.1",
      "-t",
      "2",
      "-m",
      "16",
      "-u",
      "root",
    ]);
    await waitListening(t, port);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      assert.equal(await exchange(conn, "set cryo 0 0 6\r\nfrozen\r\n", "\r\n"), "STORED\r\n");
      await dumpKillRestore(t, OPT_IN, OPT_IN);
      assert.equal(
        await exchange(conn, "get cryo\r\n", "END\r\n"),
        "VALUE cryo 0 6\r\nfrozen\r\nEND\r\n",
      );
      const fresh = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        assert.equal(
          await exchange(fresh, "get cryo\r\n", "END\r\n"),
          "VALUE cryo 0 6\r\nfrozen\r\nEND\r\n",
        );
        assert.equal(await exchange(fresh, "incr n 1\r\n", "\r\n"), "NOT_FOUND\r\n");
        assert.equal(await exchange(fresh, "set n 0 0 1\r\n5\r\n", "\r\n"), "STORED\r\n");
      } finally {
        fresh.close();
      }
      assert.equal(await exchange(conn, "incr n 1\r\n", "\r\n"), "6\r\n");
    } finally {
      conn.close();
    }
    assert.equal(t.poll(), undefined, `the restored memcached exited:\n${t.output()}`);
  }),
});

const lighttpd = need("lighttpd", "lighttpd", "/usr/sbin/lighttpd");

/** One keep-alive GET; returns the body. */
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

Deno.test({
  name: "lighttpd keeps its keep-alive client and serves new ones after restore",
  ignore: !lighttpd,
  fn: withTargets(async () => {
    const work = await tempDir("cryo-lighttpd-");
    const port = freePort();
    await Deno.writeTextFile(`${work}/a.txt`, "file a\n");
    await Deno.writeTextFile(`${work}/b.txt`, "file b\n");
    await Deno.writeTextFile(
      `${work}/lighttpd.conf`,
      `server.document-root = "${work}"
server.bind = "127.0.0.1"
server.port = ${port}
server.errorlog = "${work}/error.log"
server.max-keep-alive-idle = 600
`,
    );
    const t = await startTarget(lighttpd!, ["-D", "-f", `${work}/lighttpd.conf`]);
    await waitListening(t, port);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      assert.equal(await httpGet(conn, "/a.txt"), "file a\n");
      await dumpKillRestore(t, OPT_IN, OPT_IN);
      assert.equal(await httpGet(conn, "/b.txt"), "file b\n");
      const fresh = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        assert.equal(await httpGet(fresh, "/a.txt"), "file a\n");
      } finally {
        fresh.close();
      }
      assert.equal(await httpGet(conn, "/a.txt"), "file a\n");
    } finally {
      conn.close();
    }
    assert.equal(t.poll(), undefined, `the restored lighttpd exited:\n${t.output()}`);
  }),
});

const dnsmasq = need("dnsmasq", "dnsmasq-base", "/usr/sbin/dnsmasq");
const python = findProgram("python3", "/usr/bin/python3");

/** A python3 DNS client: asks 127.0.0.1:port for an A record, prints the address. */
const DIG = `import socket, struct, sys
port, name = int(sys.argv[1]), sys.argv[2]
q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\\0"
q += struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(q, ("127.0.0.1", port))
r = s.recv(512)
print(".".join(str(b) for b in r[-4:]))
`;

Deno.test({
  name: "dnsmasq answers DNS queries over UDP before and after restore",
  ignore: !dnsmasq || !python,
  fn: withTargets(async () => {
    const work = await tempDir("cryo-dnsmasq-");
    await Deno.writeTextFile(`${work}/dig.py`, DIG);
    const port = freePort();
    const t = await startTarget(dnsmasq!, [
      "--keep-in-foreground",
      "--conf-file=/dev/null",
      `--port=${port}`,
      "--listen-address=127.0.0.1",
      "--bind-interfaces",
      "--no-resolv",
      "--no-hosts",
      "--address=/cryo.test/127.0.0.7",
      "--user=root",
      "--group=root",
      `--pid-file=${work}/pid`,
      "--log-facility=-",
    ]);
    await waitListening(t, port);
    const dig = async () => {
      const r = await runCommand([python!, `${work}/dig.py`, String(port), "cryo.test"]);
      assert.equal(r.code, 0, r.stderr);
      return r.stdout.trim();
    };
    assert.equal(await dig(), "127.0.0.7");
    await dumpKillRestore(t);
    assert.equal(await dig(), "127.0.0.7");
    assert.equal(t.poll(), undefined, `the restored dnsmasq exited:\n${t.output()}`);
  }),
});

const sqlite3 = need("sqlite3", "sqlite3", "/usr/bin/sqlite3");

for (const journal of ["delete", "wal"]) {
  Deno.test({
    name:
      `the sqlite3 shell keeps an open transaction (journal_mode ${journal}) and its lock across the checkpoint`,
    ignore: !sqlite3,
    fn: withTargets(async () => {
      const work = await tempDir("cryo-sqlite-");
      const db = `${work}/db.sqlite`;
      const outside = async (sql: string) =>
        await runCommand([sqlite3!, "-cmd", ".timeout 0", db, sql]);
      assert.equal((await outside(`PRAGMA journal_mode=${journal}; CREATE TABLE t(x);`)).code, 0);
      const fifo = `${work}/in`;
      assert.equal((await runCommand(["mkfifo", fifo])).code, 0);
      // Held open for writing by this process: the shell's open does not block, and it never sees EOF.
      const input = await Deno.open(fifo, { read: true, write: true });
      try {
        const t = await startTarget(sqlite3!, ["-cmd", ".timeout 10000", db], { stdin: fifo });
        const say = (sql: string) => input.write(new TextEncoder().encode(sql + "\n"));
        const locked = async () => {
          // Takes the write lock for a moment and changes nothing (the shell waits meanwhile).
          const r = await outside("BEGIN IMMEDIATE; ROLLBACK;");
          return r.code !== 0 && /locked|busy/i.test(r.stderr);
        };
        // Its output to a file is buffered: the lock, seen from outside, says the shell is there.
        await say(`BEGIN IMMEDIATE; INSERT INTO t VALUES (1);`);
        await waitUntil("the shell's transaction holding the write lock", locked);
        await dumpKillRestore(t);
        assert.ok(await locked(), "the restored transaction holds the write lock");
        assert.equal((await outside("SELECT count(*) FROM t;")).stdout.trim(), "0");
        await say(`INSERT INTO t VALUES (2); COMMIT;`);
        const rows = async () => (await outside("SELECT group_concat(x) FROM t;")).stdout.trim();
        await waitUntil("the commit", async () => (await rows()) !== "");
        assert.equal(await rows(), "1,2");
        assert.equal(t.poll(), undefined, `the restored sqlite3 exited:\n${t.output()}`);
      } finally {
        input.close();
      }
    }),
  });
}

const nginx = need("nginx", "nginx-light", "/usr/sbin/nginx");

Deno.test({
  name: "nginx (a master and two workers as nobody) keeps a keep-alive client and serves new ones",
  ignore: !nginx,
  fn: withTargets(async () => {
    const work = await tempDir("cryo-nginx-");
    await Deno.chmod(work, 0o755);
    const port = freePort();
    await Deno.writeTextFile(`${work}/a.txt`, "file a\n");
    await Deno.writeTextFile(`${work}/b.txt`, "file b\n");
    await Deno.writeTextFile(
      `${work}/nginx.conf`,
      `daemon off;
master_process on;
worker_processes 2;
pid ${work}/nginx.pid;
error_log ${work}/error.log;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path ${work}/body;
  proxy_temp_path ${work}/proxy;
  server {
    listen 127.0.0.1:${port};
    root ${work};
    keepalive_timeout 600;
  }
}
`,
    );
    const t = await startTarget(nginx!, ["-c", `${work}/nginx.conf`, "-p", work]);
    await waitListening(t, port);
    await waitUntil("two workers", () => childrenOf(t.pid).length === 2);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      assert.equal(await httpGet(conn, "/a.txt"), "file a\n");
      const { tree } = await dumpKillRestore(t, OPT_IN, OPT_IN);
      assert.equal(tree.pids.length, 3, `restored ${tree.pids}`);
      assert.equal(await httpGet(conn, "/b.txt"), "file b\n");
      for (let i = 0; i < 4; i++) {
        const fresh = await Deno.connect({ hostname: "127.0.0.1", port });
        try {
          assert.equal(await httpGet(fresh, "/a.txt"), "file a\n");
        } finally {
          fresh.close();
        }
      }
      assert.equal(await httpGet(conn, "/a.txt"), "file a\n");
    } finally {
      conn.close();
    }
    assert.equal(t.poll(), undefined, `the restored nginx exited:\n${t.output()}`);
    assert.equal(childrenOf(t.pid).length, 2, "both workers run on");
  }),
});

/** The child pids of `pid`. */
function childrenOf(pid: number): number[] {
  return Deno.readTextFileSync(`/proc/${pid}/task/${pid}/children`).split(/\s+/).filter(Boolean)
    .map(Number);
}

/** PostgreSQL's server binary (the newest installed), or undefined. */
function findPostgres(): string | undefined {
  try {
    const versions = [...Deno.readDirSync("/usr/lib/postgresql")].map((e) => e.name)
      .sort((a, b) => Number(b) - Number(a));
    for (const v of versions) {
      const p = `/usr/lib/postgresql/${v}/bin/postgres`;
      if (findProgram("postgres", p) === p) return p;
    }
  } catch { /* not installed */ }
  console.error(
    "restore_debian_test: PostgreSQL not found (apt-get install -y postgresql); skipping",
  );
  return undefined;
}

const postgres = findPostgres();

Deno.test({
  name: "PostgreSQL (postmaster, workers, a backend in an open transaction) goes on after restore",
  ignore: !postgres,
  fn: withTargets(async () => {
    const bin = postgres!.slice(0, postgres!.lastIndexOf("/"));
    const work = await tempDir("cryo-postgres-");
    const asPostgres = [
      "/usr/bin/setpriv",
      "--reuid=postgres",
      "--regid=postgres",
      "--init-groups",
    ];
    assert.equal((await runCommand(["chown", "postgres", work])).code, 0);
    const init = await runCommand([
      ...asPostgres,
      `${bin}/initdb`,
      "-D",
      `${work}/data`,
      "-A",
      "trust",
      "--no-sync",
      "-U",
      "postgres",
    ]);
    assert.equal(init.code, 0, init.stderr);
    const port = freePort();
    const shmBefore = new Set([...Deno.readDirSync("/dev/shm")].map((e) => e.name));
    const t = await startTarget(asPostgres[0], [
      ...asPostgres.slice(1),
      postgres!,
      "-D",
      `${work}/data`,
      "-k",
      work,
      "-p",
      String(port),
      "-c",
      "listen_addresses=127.0.0.1",
      "-c",
      "shared_buffers=16MB",
      "-c",
      "fsync=off",
    ]);
    const segments: number[] = [];
    const fifo = `${work}/in`;
    assert.equal((await runCommand(["mkfifo", fifo])).code, 0);
    const input = await Deno.open(fifo, { read: true, write: true });
    try {
      await waitListening(t, port);
      // Listening is not ready: until its startup process is done the postmaster refuses
      // clients ("the database system is starting up"), seconds on a loaded machine.
      const hostPort = ["-h", "127.0.0.1", "-p", String(port)];
      await waitUntil(
        "postgres accepting connections",
        async () => (await runCommand([`${bin}/pg_isready`, ...hostPort, "-q"])).code === 0,
        60000,
      );
      const psqlArgs = [...hostPort, "-U", "postgres", "-X", "-A", "-t"];
      const client = await startTarget(`${bin}/psql`, [...psqlArgs, "-q"], { stdin: fifo });
      const say = (sql: string) => input.write(new TextEncoder().encode(sql + "\n"));
      await say(
        "CREATE TABLE t(x int); INSERT INTO t VALUES (1); BEGIN; INSERT INTO t VALUES (2);" +
          " SELECT 'inside', count(*) FROM t;",
      );
      await client.waitFor(/^inside\|2$/m, 30000);
      const { tree, dump } = await dumpKillRestore(t, OPT_IN, OPT_IN);
      segments.push(...(dump.manifest.sysvShm ?? []).map((s) => s.shmid));
      assert.ok(tree.pids.length >= 6, `restored ${tree.pids}`);
      // The same session, in its transaction: its own rows are there (shared buffers).
      await say("INSERT INTO t VALUES (3); SELECT 'still', count(*) FROM t; COMMIT;");
      await client.waitFor(/^still\|3$/m);
      const fresh = await runCommand([
        `${bin}/psql`,
        ...psqlArgs,
        "-c",
        "SELECT string_agg(x::text, ',' ORDER BY x) FROM t",
      ]);
      assert.equal(fresh.stdout.trim(), "1,2,3", fresh.stderr);
      assert.equal(t.poll(), undefined, `the restored postmaster exited:\n${t.output()}`);
      assert.doesNotMatch(t.output(), /terminated by signal/, t.output());
    } finally {
      input.close();
      await cleanupTargets(); // before its leftovers are removed
      for (const id of segments) {
        await runCommand(["ipcrm", "-m", String(id)]);
      }
      for (const e of Deno.readDirSync("/dev/shm")) {
        if (e.name.startsWith("PostgreSQL.") && !shmBefore.has(e.name)) {
          await Deno.remove(`/dev/shm/${e.name}`).catch(() => {});
        }
      }
    }
  }),
});
