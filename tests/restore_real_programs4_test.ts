/**
 * A fourth round of real programs across dump, kill and restore, each
 * checked from outside (skipped, with a message, when not installed):
 *
 * - Deno itself: `Deno.serve` with a keep-alive client and a streaming
 *   response, a Web Worker, setInterval, Deno.watchFs and a `cat` child
 *   (Deno.Command) on pipes;
 * - node: worker_threads, fs.watch, a child_process on pipes and a pending
 *   setTimeout, behind an http server with a keep-alive client;
 * - python3 asyncio: a TCP server, a subprocess on pipes, a
 *   ThreadPoolExecutor and a ticking task;
 * - python3 sqlite3 in WAL mode with mmap, writing while another process
 *   reads the database;
 * - bash with a coproc (bc) and a process substitution;
 * - `make -j2` halfway through a build (its jobserver pipe, two recipes
 *   running);
 * - `xargs -P2` halfway through its list;
 * - lua and tclsh loops (tclsh: an event loop serving a socket);
 * - git daemon: a clone after the restore;
 * - netcat (OpenBSD) and ncat (`--chat`, two clients) with connections open;
 * - Apache httpd with mpm_event (a master, its children with threads, a
 *   scoreboard in shared memory), a keep-alive client, a graceful restart
 *   after the restore.
 */

import { childrenOf, commsOf } from "./helpers/proc.ts";
import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { restore } from "../engine/restore/mod.ts";
import { assertDumpRefused, dumpKillRestore } from "./helpers/roundtrip.ts";
import {
  adoptPid,
  becomeSubreaper,
  startTarget,
  type Target,
  withTargets,
} from "./helpers/targets.ts";
import { tempDir } from "./helpers/fs.ts";
import { findProgram, freePort, needProgram, readUntil, waitListening } from "./helpers/servers.ts";
import { runCommand } from "./helpers/commands.ts";
import { sleep, waitUntil } from "./helpers/wait.ts";

const OPT_IN = { optIns: ["tcp-established"] };

/** The path of program `name` (a line on stderr when the tests needing it skip). */
const need = (name: string, pkg: string) => needProgram("restore_real_programs4_test", name, pkg);

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Text of a file, "" while it does not exist. */
function readOr(path: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return "";
  }
}

/** One GET on a keep-alive connection (HTTP/1.1, a Content-Length reply); returns the body. */
async function keepAliveGet(conn: Deno.Conn, path: string): Promise<string> {
  await conn.write(enc.encode(`GET ${path} HTTP/1.1\r\nHost: localhost\r\n\r\n`));
  const text = await readUntil(conn, (t) => {
    const head = t.indexOf("\r\n\r\n");
    if (head < 0) return false;
    const len = t.slice(0, head).match(/\r\ncontent-length: *(\d+)/i);
    return len !== null && t.length - head - 4 >= Number(len[1]);
  });
  assert.match(text, /^HTTP\/1\.1 200 /, `reply: ${JSON.stringify(text)}`);
  assert.doesNotMatch(text, /\r\nconnection: *close/i, "the server closes the connection");
  return text.slice(text.indexOf("\r\n\r\n") + 4);
}

/** Parses "k=v k=v" into a record. */
function fields(line: string): Record<string, string> {
  return Object.fromEntries(line.trim().split(/\s+/).map((kv) => kv.split("=", 2)));
}

/** Reads all of `conn` into `sink.text` in the background (a streaming reply). */
function collect(conn: Deno.Conn): { text: string } {
  const sink = { text: "" };
  (async () => {
    const buf = new Uint8Array(4096);
    for (;;) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) return;
      sink.text += dec.decode(buf.subarray(0, n));
    }
  })();
  return sink;
}

/** The numbers of the "chunkN" lines in `text`, in order. */
function chunkNumbers(text: string): number[] {
  return [...text.matchAll(/chunk(\d+)\n/g)].map((m) => Number(m[1]));
}

/** Asserts that the restored `t` still runs. */
function assertRunning(t: Target, what: string): void {
  assert.equal(t.poll(), undefined, `the restored ${what} exited:\n${t.output()}`);
}

const deno = Deno.execPath();

Deno.test({
  name:
    "Deno (Deno.serve keep-alive and streaming, a Worker, setInterval, watchFs, a piped child) goes on after restore",
  fn: withTargets(async () => {
    const work = await tempDir("cryo-deno-");
    const port = freePort();
    await Deno.mkdir(`${work}/watched`);
    await Deno.writeTextFile(
      `${work}/worker.js`,
      `let n = 0;\nself.onmessage = (e) => { n++; self.postMessage("w" + n + ":" + e.data); };\n`,
    );
    await Deno.writeTextFile(
      `${work}/server.ts`,
      `const port = Number(Deno.args[0]);
const dir = Deno.args[1];
let ticks = 0;
setInterval(() => ticks++, 20);
let sigs = 0;
Deno.addSignalListener("SIGUSR1", () => sigs++);
const worker = new Worker(new URL("./worker.js", import.meta.url).href, { type: "module" });
const pending: ((s: string) => void)[] = [];
worker.onmessage = (e) => pending.shift()!(e.data);
const ask = (s: string) => new Promise<string>((r) => { pending.push(r); worker.postMessage(s); });
const events = new Set<string>();
(async () => {
  for await (const ev of Deno.watchFs(dir)) for (const p of ev.paths) events.add(p.split("/").pop()!);
})();
const child = new Deno.Command("cat", { stdin: "piped", stdout: "piped" }).spawn();
const cw = child.stdin.getWriter();
const cr = child.stdout.getReader();
const viaCat = async (s: string) => {
  await cw.write(new TextEncoder().encode(s + "\\n"));
  const { value } = await cr.read();
  return new TextDecoder().decode(value).trim();
};
let reqs = 0;
Deno.serve({ port, hostname: "127.0.0.1", onListen() { console.log("ready", Deno.pid); } }, async (req) => {
  reqs++;
  if (new URL(req.url).pathname === "/stream") {
    let i = 0;
    return new Response(new ReadableStream({
      async pull(c) {
        await new Promise((r) => setTimeout(r, 50));
        c.enqueue(new TextEncoder().encode("chunk" + i++ + "\\n"));
      },
    }));
  }
  const w = await ask("x");
  const c = await viaCat("c" + reqs);
  return new Response("reqs=" + reqs + " ticks=" + ticks + " worker=" + w + " cat=" + c +
    " events=" + [...events].sort().join(",") + " sigs=" + sigs + "\\n");
});
`,
    );
    const t = await startTarget(deno, [
      "run",
      "--allow-all",
      "--no-config",
      `${work}/server.ts`,
      String(port),
      `${work}/watched`,
    ], { cwd: work });
    await waitListening(t, port);
    await Deno.writeTextFile(`${work}/watched/before`, "1");
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const streaming = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await waitUntil(
        "the watch event",
        async () => fields(await keepAliveGet(conn, "/")).events === "before",
      );
      const one = fields(await keepAliveGet(conn, "/"));
      await streaming.write(enc.encode("GET /stream HTTP/1.1\r\nHost: localhost\r\n\r\n"));
      const stream = collect(streaming);
      await waitUntil("3 chunks", () => chunkNumbers(stream.text).length >= 3);
      const rt = await dumpKillRestore(t, OPT_IN, OPT_IN);
      assert.equal(rt.tree.pids.length, 2, `restored pids ${rt.tree.pids}`); // deno, cat
      const atRestore = chunkNumbers(stream.text).length;
      await Deno.writeTextFile(`${work}/watched/after`, "2");
      await waitUntil(
        "the watch event after restore",
        async () => fields(await keepAliveGet(conn, "/")).events === "after,before",
      );
      const two = fields(await keepAliveGet(conn, "/"));
      assert.ok(Number(two.reqs) > Number(one.reqs), `${one.reqs} then ${two.reqs}`);
      assert.ok(Number(two.ticks) > Number(one.ticks), `${one.ticks} then ${two.ticks}`);
      const n1 = Number(one.worker.match(/^w(\d+):x$/)![1]);
      const n2 = Number(two.worker.match(/^w(\d+):x$/)![1]);
      assert.ok(n2 > n1, `the worker's count: ${one.worker} then ${two.worker}`);
      assert.equal(two.cat, `c${two.reqs}`);
      // The signal listener (tokio's: a handler writing to a pipe its event loop polls).
      assert.equal(two.sigs, "0");
      t.signal(10); // SIGUSR1
      await waitUntil(
        "the signal listener",
        async () => fields(await keepAliveGet(conn, "/")).sigs === "1",
      );
      // The streaming response goes on over its connection, no chunk lost or repeated.
      await waitUntil("more chunks", () => chunkNumbers(stream.text).length >= atRestore + 3);
      const nums = chunkNumbers(stream.text);
      assert.deepEqual(nums, nums.map((_, i) => i), `chunks ${nums}`);
      // A new client.
      const fresh = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        const three = fields(await keepAliveGet(fresh, "/"));
        assert.ok(Number(three.reqs) > Number(two.reqs) + 1, `${two.reqs} then ${three.reqs}`);
        assert.equal(three.cat, `c${three.reqs}`);
      } finally {
        fresh.close();
      }
      assertRunning(t, "deno");
    } finally {
      conn.close();
      streaming.close();
    }
  }),
});

const node = need("node", "nodejs");

Deno.test({
  name:
    "node (worker_threads, fs.watch, a piped child_process, a pending setTimeout) goes on after restore",
  ignore: !node,
  fn: withTargets(async () => {
    const work = await tempDir("cryo-node-");
    const port = freePort();
    await Deno.mkdir(`${work}/watched`);
    await Deno.writeTextFile(
      `${work}/server.js`,
      `const { Worker } = require("worker_threads");
const fs = require("fs"), cp = require("child_process"), http = require("http");
const [port, dir] = [Number(process.argv[2]), process.argv[3]];
const w = new Worker('const {parentPort}=require("worker_threads"); let n=0;' +
  'parentPort.on("message", (m) => parentPort.postMessage("w" + (++n) + ":" + m));', { eval: true });
const pend = [];
w.on("message", (m) => pend.shift()(m));
const ask = (s) => new Promise((r) => { pend.push(r); w.postMessage(s); });
const events = new Set();
fs.watch(dir, (_, name) => events.add(name));
const child = cp.spawn("cat", [], { stdio: ["pipe", "pipe", "inherit"] });
const cpend = [];
child.stdout.on("data", (d) => cpend.shift()(d.toString().trim()));
const viaCat = (s) => new Promise((r) => { cpend.push(r); child.stdin.write(s + "\\n"); });
const started = Date.now();
let fired = 0;
setTimeout(() => { fired = Date.now() - started; }, Number(process.argv[4]));
let reqs = 0;
const server = http.createServer(async (req, res) => {
  reqs++;
  const body = "reqs=" + reqs + " fired=" + fired + " worker=" + (await ask("x")) +
    " cat=" + (await viaCat("c" + reqs)) + " events=" + [...events].sort().join(",") + "\\n";
  res.setHeader("Content-Length", Buffer.byteLength(body));
  res.end(body);
});
server.keepAliveTimeout = 60000;
server.listen(port, "127.0.0.1");
`,
    );
    // The timer fires 2.5 s after the start: pending at the dump, due after the restore.
    const t = await startTarget(node!, [
      `${work}/server.js`,
      String(port),
      `${work}/watched`,
      "2500",
    ]);
    await waitListening(t, port);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      const one = fields(await keepAliveGet(conn, "/"));
      assert.equal(one.fired, "0", "the timer fired before the dump");
      await dumpKillRestore(t, OPT_IN, OPT_IN);
      await Deno.writeTextFile(`${work}/watched/after`, "2");
      await waitUntil("the watch event after restore", async () => {
        const f = fields(await keepAliveGet(conn, "/"));
        return f.events === "after";
      });
      await waitUntil("the timer", async () => fields(await keepAliveGet(conn, "/")).fired !== "0");
      const two = fields(await keepAliveGet(conn, "/"));
      // (libuv measures from its cached loop time: a few ms early by Date.now())
      assert.ok(Number(two.fired) >= 2400, `fired after ${two.fired} ms`);
      assert.ok(Number(two.reqs) > Number(one.reqs));
      assert.equal(two.worker, `w${two.reqs}:x`);
      assert.equal(two.cat, `c${two.reqs}`);
      assertRunning(t, "node");
    } finally {
      conn.close();
    }
  }),
});

const python3 = need("python3", "python3");

Deno.test({
  name:
    "python3 asyncio (a TCP server, a piped subprocess, a ThreadPoolExecutor, a ticking task) goes on after restore",
  ignore: !python3,
  fn: withTargets(async () => {
    const work = await tempDir("cryo-asyncio-");
    const port = freePort();
    await Deno.writeTextFile(
      `${work}/server.py`,
      `import asyncio, signal, sys, threading
from concurrent.futures import ThreadPoolExecutor

port = int(sys.argv[1])
pool = ThreadPoolExecutor(max_workers=2)
done = 0
lock = threading.Lock()
ticks = 0

def work(n):
    global done
    with lock:
        done += 1
    return n * n

async def tick():
    global ticks
    while True:
        await asyncio.sleep(0.02)
        ticks += 1

async def main():
    loop = asyncio.get_running_loop()
    cat = await asyncio.create_subprocess_exec("cat", stdin=asyncio.subprocess.PIPE,
                                               stdout=asyncio.subprocess.PIPE)
    asyncio.ensure_future(tick())
    sigs = 0
    def on_usr1():
        nonlocal sigs
        sigs += 1
    loop.add_signal_handler(signal.SIGUSR1, on_usr1)
    reqs = 0

    async def client(reader, writer):
        nonlocal reqs
        while True:
            line = await reader.readline()
            if not line:
                break
            reqs += 1
            sq = await loop.run_in_executor(pool, work, reqs)
            cat.stdin.write(b"c%d\\n" % reqs)
            await cat.stdin.drain()
            echoed = (await cat.stdout.readline()).decode().strip()
            writer.write(f"reqs={reqs} sq={sq} done={done} cat={echoed} ticks={ticks} sigs={sigs}\\n".encode())
            await writer.drain()

    server = await asyncio.start_server(client, "127.0.0.1", port)
    await asyncio.gather(*[loop.run_in_executor(pool, work, 0) for _ in range(4)])
    print("ready", flush=True)
    async with server:
        await server.serve_forever()

asyncio.run(main())
`,
    );
    const t = await startTarget(python3!, [`${work}/server.py`, String(port)]);
    await waitListening(t, port);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const ask = async () => fields(await readUntilLine(conn, "x\n"));
    try {
      const one = await ask();
      assert.deepEqual([one.reqs, one.sq, one.cat], ["1", "1", "c1"]);
      const rt = await dumpKillRestore(t, OPT_IN, OPT_IN);
      assert.equal(rt.tree.pids.length, 2, `restored pids ${rt.tree.pids}`); // python, cat
      await sleep(100);
      const two = await ask();
      assert.deepEqual([two.reqs, two.sq, two.cat], ["2", "4", "c2"]);
      assert.equal(Number(two.done), Number(one.done) + 1, "the pool's count");
      assert.ok(Number(two.ticks) > Number(one.ticks), `ticks ${one.ticks} then ${two.ticks}`);
      // loop.add_signal_handler: the C handler writes to the loop's wakeup socket.
      t.signal(10); // SIGUSR1
      await waitUntil(
        "the signal handler",
        async () => fields(await readUntilLine(conn, "z\n")).sigs === "1",
      );
      const fresh = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        assert.equal(fields(await readUntilLine(fresh, "y\n")).sigs, "1");
      } finally {
        fresh.close();
      }
      assertRunning(t, "python");
    } finally {
      conn.close();
    }
  }),
});

/** Sends `text` on `conn` and reads one line back. */
async function readUntilLine(conn: Deno.Conn, text: string): Promise<string> {
  await conn.write(enc.encode(text));
  return await readUntil(conn, (s) => s.endsWith("\n"));
}

Deno.test({
  name:
    "python3 sqlite3 in WAL mode with mmap goes on writing after restore while another process reads",
  ignore: !python3,
  fn: withTargets(async () => {
    const work = await tempDir("cryo-sqlite-");
    const db = `${work}/t.db`;
    // The writer inserts a row every 20 ms, each in its own transaction, and keeps a read
    // transaction's snapshot open on a second connection; the WAL index (t.db-shm) is mapped
    // shared and the database file mapped for reads (mmap_size).
    await Deno.writeTextFile(
      `${work}/writer.py`,
      `import sqlite3, sys, time
db = sys.argv[1]
w = sqlite3.connect(db, isolation_level=None)
w.execute("PRAGMA journal_mode=WAL")
w.execute("PRAGMA mmap_size=1048576")
w.execute("PRAGMA wal_autocheckpoint=0")
w.execute("CREATE TABLE t (n INTEGER PRIMARY KEY, v TEXT)")
n = 0
for n in range(1, 6):
    w.execute("INSERT INTO t VALUES (?, ?)", (n, "x" * 100))
r = sqlite3.connect(db, isolation_level=None)
r.execute("PRAGMA mmap_size=1048576")
r.execute("BEGIN")
snap = r.execute("SELECT count(*) FROM t").fetchone()[0]
print("ready", flush=True)
while True:
    n += 1
    w.execute("INSERT INTO t VALUES (?, ?)", (n, "x" * 100))
    if n % 10 == 0:
        with open(db + ".progress", "w") as f:
            f.write(f"{n} {r.execute('SELECT count(*) FROM t').fetchone()[0]} {snap}\\n")
    time.sleep(0.02)
`,
    );
    const t = await startTarget(python3!, [`${work}/writer.py`, db]);
    await t.waitFor(/^ready$/m);
    const count = async () => {
      const r = await runCommand([
        python3!,
        "-c",
        "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); " +
        "print(c.execute('SELECT count(*), max(n) FROM t').fetchone()[0], " +
        "c.execute('PRAGMA integrity_check').fetchone()[0])",
        db,
      ]);
      assert.equal(r.code, 0, r.stderr);
      const [n, check] = r.stdout.trim().split(" ");
      assert.equal(check, "ok");
      return Number(n);
    };
    await waitUntil("20 rows", async () => (await count()) >= 20);
    const before = await count();
    await dumpKillRestore(t);
    await waitUntil("20 more rows", async () => (await count()) >= before + 20);
    // The writer's second connection still reads through its old snapshot: 5 rows.
    const [n, seen, snap] = readOr(`${db}.progress`).trim().split(" ").map(Number);
    assert.ok(n >= before + 10, `progress ${n}`);
    assert.equal(seen, 5, "the read transaction's snapshot");
    assert.equal(snap, 5);
    assertRunning(t, "writer");
  }),
});

const bash = need("bash", "bash");
const bc = findProgram("bc");

Deno.test({
  name: "bash with a coproc (bc) and a process substitution goes on after restore",
  ignore: !bash || !bc,
  fn: withTargets(async () => {
    const work = await tempDir("cryo-coproc-");
    const out = `${work}/out`;
    await Deno.writeTextFile(
      `${work}/co.sh`,
      `coproc BC { bc -l; }
exec 3< <(i=0; while :; do i=$((i+1)); echo "tick$i"; sleep 0.05; done)
n=0
while :; do
  n=$((n+1))
  echo "$n*2" >&\${BC[1]}; read -r r <&\${BC[0]}
  read -r t <&3
  echo "n=$n r=$r t=$t" > ${out}.new; mv ${out}.new ${out}
  sleep 0.05
done
`,
    );
    const t = await startTarget(bash!, [`${work}/co.sh`]);
    const now = () => fields(readOr(out) || "n=0");
    await waitUntil("5 rounds", () => Number(now().n) >= 5);
    const rt = await dumpKillRestore(t);
    assert.ok(rt.tree.pids.length >= 4, `restored pids ${rt.tree.pids}`);
    const one = now();
    await waitUntil("10 more rounds", () => Number(now().n) >= Number(one.n) + 10);
    const two = now();
    assert.equal(Number(two.r), 2 * Number(two.n), `bc: ${JSON.stringify(two)}`);
    // The substitution's counter goes on with the loop's, one line each round.
    assert.equal(
      Number(two.t.slice(4)) - Number(two.n),
      Number(one.t.slice(4)) - Number(one.n),
      `${JSON.stringify(one)} then ${JSON.stringify(two)}`,
    );
    assertRunning(t, "bash");
  }),
});

const make = need("make", "make");
const cc = findProgram("cc");

Deno.test({
  name: "make -j2 halfway through a build finishes it after restore",
  ignore: !make || !cc,
  fn: withTargets(async () => {
    const work = await tempDir("cryo-make-");
    for (let i = 1; i <= 8; i++) {
      await Deno.writeTextFile(`${work}/f${i}.c`, `int f${i}(void) { return ${i}; }\n`);
    }
    await Deno.writeTextFile(
      `${work}/main.c`,
      `int f1(void), f8(void);\nint main(void) { return f1() + f8() == 9 ? 0 : 1; }\n`,
    );
    await Deno.writeTextFile(
      `${work}/Makefile`,
      `OBJS = $(patsubst %.c,%.o,$(wildcard f*.c))
prog: $(OBJS) main.c
\tcc -o $@ $^
%.o: %.c
\tsleep 0.2; cc -c -o $@ $<
`,
    );
    const t = await startTarget(make!, ["-C", work, "-j2"]);
    const objects = () => [...Deno.readDirSync(work)].filter((e) => e.name.endsWith(".o")).length;
    // Two recipes at a time: dump while two run, with some objects built and some not.
    await waitUntil("two objects and two recipes running", () => {
      const shells = childrenOf(t.pid);
      return objects() >= 2 && shells.length === 2 && commsOf(shells).every((c) => c === "sh");
    });
    const rt = await dumpKillRestore(t);
    assert.ok(objects() < 8, "the build had ended");
    assert.ok(rt.tree.pids.length >= 3, `restored pids ${rt.tree.pids}`);
    const st = await t.wait();
    assert.deepEqual(st.kind === "exited" ? st.code : st, 0, t.output());
    assert.equal(objects(), 8);
    const run = await runCommand([`${work}/prog`]);
    assert.equal(run.code, 0);
    // Each object compiled once.
    assert.equal(t.output().match(/cc -c -o/g)?.length, 8, t.output());
  }),
});

const xargs = need("xargs", "findutils");

Deno.test({
  name: "xargs -P2 halfway through its list runs each item once after restore",
  ignore: !xargs,
  fn: withTargets(async () => {
    const work = await tempDir("cryo-xargs-");
    await Deno.writeTextFile(
      `${work}/list`,
      Array.from({ length: 30 }, (_, i) => i + 1).join("\n"),
    );
    const out = `${work}/out`;
    const t = await startTarget(xargs!, [
      "-a",
      `${work}/list`,
      "-P2",
      "-n1",
      "sh",
      "-c",
      `sleep 0.05; echo "$0" >> ${out}`,
    ]);
    const done = () => readOr(out).split("\n").filter(Boolean).map(Number);
    await waitUntil("5 items", () => done().length >= 5);
    await dumpKillRestore(t);
    assert.ok(done().length < 30, "xargs had ended");
    const st = await t.wait();
    assert.deepEqual(st.kind === "exited" ? st.code : st, 0, t.output());
    assert.deepEqual(done().toSorted((a, b) => a - b), Array.from({ length: 30 }, (_, i) => i + 1));
  }),
});

const lua = need("lua5.4", "lua5.4");

Deno.test({
  name: "lua (a coroutine, a table, os.execute children) counts on after restore",
  ignore: !lua,
  fn: withTargets(async () => {
    const work = await tempDir("cryo-lua-");
    const out = `${work}/out`;
    await Deno.writeTextFile(
      `${work}/loop.lua`,
      `local seen, sum = {}, 0
local gen = coroutine.wrap(function() local i = 0 while true do i = i + 1 coroutine.yield(i) end end)
while true do
  local n = gen()
  seen[#seen + 1] = n
  sum = sum + n
  local f = io.open("${out}.new", "w")
  f:write(string.format("n=%d len=%d sum=%d\\n", n, #seen, sum))
  f:close()
  os.rename("${out}.new", "${out}")
  os.execute("sleep 0.03")
end
`,
    );
    const t = await startTarget(lua!, [`${work}/loop.lua`]);
    const now = () => fields(readOr(out) || "n=0");
    await waitUntil("5 rounds", () => Number(now().n) >= 5);
    await dumpKillRestore(t);
    const one = now();
    await waitUntil("10 more rounds", () => Number(now().n) >= Number(one.n) + 10);
    const two = now();
    const n = Number(two.n);
    assert.deepEqual([Number(two.len), Number(two.sum)], [n, (n * (n + 1)) / 2], readOr(out));
    assertRunning(t, "lua");
  }),
});

const tclsh = need("tclsh", "tcl");

Deno.test({
  name: "tclsh (an event loop: a socket server, an after ticker) goes on after restore",
  ignore: !tclsh,
  fn: withTargets(async () => {
    const work = await tempDir("cryo-tcl-");
    const port = freePort();
    await Deno.writeTextFile(
      `${work}/server.tcl`,
      `set ticks 0
set reqs 0
proc tick {} { global ticks; incr ticks; after 20 tick }
proc serve {chan addr port} {
  fconfigure $chan -buffering line
  fileevent $chan readable [list answer $chan]
}
proc answer {chan} {
  global ticks reqs
  if {[gets $chan line] < 0} { if {[eof $chan]} { close $chan }; return }
  incr reqs
  puts $chan "reqs=$reqs ticks=$ticks line=$line"
}
socket -server serve -myaddr 127.0.0.1 ${port}
after 20 tick
vwait forever
`,
    );
    const t = await startTarget(tclsh!, [`${work}/server.tcl`]);
    await waitListening(t, port);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      const one = fields(await readUntilLine(conn, "a\n"));
      await sleep(100);
      await dumpKillRestore(t, OPT_IN, OPT_IN);
      await sleep(100);
      const two = fields(await readUntilLine(conn, "b\n"));
      assert.deepEqual([one.reqs, two.reqs, two.line], ["1", "2", "b"]);
      assert.ok(Number(two.ticks) > Number(one.ticks), `ticks ${one.ticks} then ${two.ticks}`);
      const fresh = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        assert.equal(fields(await readUntilLine(fresh, "c\n")).reqs, "3");
      } finally {
        fresh.close();
      }
      assertRunning(t, "tclsh");
    } finally {
      conn.close();
    }
  }),
});

const git = need("git", "git");

Deno.test({
  name: "git daemon serves a clone after restore",
  ignore: !git,
  fn: withTargets(async () => {
    const work = await tempDir("cryo-git-");
    const port = freePort();
    const env = {
      GIT_AUTHOR_NAME: "cryo",
      GIT_AUTHOR_EMAIL: "cryo@localhost",
      GIT_COMMITTER_NAME: "cryo",
      GIT_COMMITTER_EMAIL: "cryo@localhost",
      HOME: work,
    };
    const g = async (args: string[]) => {
      const r = await runCommand([git!, ...args], { env });
      assert.equal(r.code, 0, `git ${args.join(" ")}: ${r.stderr}`);
      return r.stdout;
    };
    await g(["init", "-q", "-b", "main", `${work}/src`]);
    await Deno.writeTextFile(`${work}/src/a`, "one\n");
    await g(["-C", `${work}/src`, "add", "a"]);
    await g(["-C", `${work}/src`, "commit", "-q", "-m", "first"]);
    await g(["clone", "-q", "--bare", `${work}/src`, `${work}/repo.git`]);
    const head = (await g(["-C", `${work}/src`, "rev-parse", "HEAD"])).trim();
    const t = await startTarget(git!, [
      "daemon",
      "--reuseaddr",
      "--export-all",
      `--base-path=${work}`,
      "--listen=127.0.0.1",
      `--port=${port}`,
      `${work}`,
    ]);
    await waitListening(t, port);
    await g(["clone", "-q", `git://127.0.0.1:${port}/repo.git`, `${work}/before`]);
    await dumpKillRestore(t);
    // A new commit in the served repository, fetched by a clone after the restore.
    await Deno.writeTextFile(`${work}/src/a`, "two\n");
    await g(["-C", `${work}/src`, "commit", "-q", "-am", "second"]);
    await g(["-C", `${work}/src`, "push", "-q", `${work}/repo.git`, "main"]);
    await g(["clone", "-q", `git://127.0.0.1:${port}/repo.git`, `${work}/after`]);
    assert.equal(Deno.readTextFileSync(`${work}/after/a`), "two\n");
    assert.equal((await g(["-C", `${work}/after`, "rev-parse", "HEAD~1"])).trim(), head);
    await g(["-C", `${work}/before`, "pull", "-q", "--ff-only"]);
    assert.equal(Deno.readTextFileSync(`${work}/before/a`), "two\n");
    assertRunning(t, "git daemon");
  }),
});

const nc = need("nc.openbsd", "netcat-openbsd");

Deno.test({
  name: "netcat (OpenBSD) listening with a client connected goes on receiving after restore",
  ignore: !nc,
  fn: withTargets(async () => {
    const port = freePort();
    const t = await startTarget(nc!, ["-d", "-l", "127.0.0.1", String(port)]);
    await waitListening(t, port);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await conn.write(enc.encode("one\n"));
      await waitUntil("the first line", () => t.output() === "one\n");
      await dumpKillRestore(t, OPT_IN, OPT_IN);
      await conn.write(enc.encode("two\n"));
      await waitUntil("the line after restore", () => t.output() === "one\ntwo\n");
      conn.close();
      const st = await t.wait();
      assert.deepEqual(st.kind === "exited" ? st.code : st, 0, "nc's exit at the client's close");
    } finally {
      try {
        conn.close();
      } catch { /* closed */ }
    }
  }),
});

const ncat = need("ncat", "ncat");

Deno.test({
  name: "ncat --chat with two clients relays between them after restore",
  ignore: !ncat,
  fn: withTargets(async () => {
    const port = freePort();
    const t = await startTarget(ncat!, ["-l", "127.0.0.1", String(port), "--chat"]);
    await waitListening(t, port);
    const a = await Deno.connect({ hostname: "127.0.0.1", port });
    const b = await Deno.connect({ hostname: "127.0.0.1", port });
    const c: Deno.Conn[] = [];
    try {
      const fromA = collect(a);
      const fromB = collect(b);
      await a.write(enc.encode("one\n"));
      await waitUntil("the first message", () => /> one\n/.test(fromB.text));
      await dumpKillRestore(t, OPT_IN, OPT_IN);
      await b.write(enc.encode("two\n"));
      await waitUntil("a message after restore", () => /> two\n/.test(fromA.text));
      c.push(await Deno.connect({ hostname: "127.0.0.1", port }));
      const fromC = collect(c[0]);
      // ncat announces each arrival to the others.
      await waitUntil(
        "the third client's arrival",
        () => /<announce> .* connected/.test(fromA.text.split("two")[1] ?? ""),
      );
      await a.write(enc.encode("three\n"));
      await waitUntil(
        "to the old and the new client",
        () => /> three\n/.test(fromB.text) && /> three\n/.test(fromC.text),
      );
      assertRunning(t, "ncat");
    } finally {
      a.close();
      b.close();
      for (const x of c) x.close();
    }
  }),
});

const apache2 = need("apache2", "apache2");

Deno.test({
  name:
    "Apache httpd (mpm_event: a master, children with threads) serves a keep-alive client after restore, and reloads",
  ignore: !apache2,
  fn: withTargets(async () => {
    const work = await tempDir("cryo-apache-");
    const port = freePort();
    const mods = "/usr/lib/apache2/modules";
    await Deno.mkdir(`${work}/htdocs`);
    await Deno.writeTextFile(`${work}/htdocs/index.html`, "hello\n");
    await Deno.chmod(work, 0o755); // the children run as www-data
    await Deno.writeTextFile(
      `${work}/httpd.conf`,
      `ServerRoot ${work}
ServerName localhost
Listen 127.0.0.1:${port}
LoadModule mpm_event_module ${mods}/mod_mpm_event.so
LoadModule authz_core_module ${mods}/mod_authz_core.so
LoadModule status_module ${mods}/mod_status.so
User www-data
Group www-data
PidFile ${work}/httpd.pid
ErrorLog ${work}/error.log
Mutex file:${work} default
DocumentRoot ${work}/htdocs
StartServers 2
ServerLimit 4
ThreadsPerChild 4
MaxRequestWorkers 16
KeepAliveTimeout 60
<Location /status>
SetHandler server-status
</Location>
`,
    );
    const t = await startTarget(apache2!, ["-f", `${work}/httpd.conf`, "-DFOREGROUND"]);
    await waitListening(t, port);
    const accesses = async () => {
      const fresh = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        const s = await keepAliveGet(fresh, "/status?auto");
        return Number(s.match(/^Total Accesses: (\d+)$/m)![1]);
      } finally {
        fresh.close();
      }
    };
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await waitUntil("two children", () => childrenOf(t.pid).length >= 2);
      for (let i = 0; i < 10; i++) assert.equal(await keepAliveGet(conn, "/index.html"), "hello\n");
      const before = await accesses();
      assert.ok(before >= 8, `Total Accesses ${before}`);
      const rt = await dumpKillRestore(t, OPT_IN, OPT_IN);
      assert.ok(rt.tree.pids.length >= 3, `restored pids ${rt.tree.pids}`);
      // The same connection, then the counters in the scoreboard (shared memory) go on.
      assert.equal(await keepAliveGet(conn, "/index.html"), "hello\n");
      // (A request is counted once its response has gone out: the next one may see it a moment
      // later. A count restarted from 0 would stay far below.)
      let after = 0;
      for (let i = 0; i < 5 && after < before + 2; i++) {
        if (i) await sleep(100);
        after = await accesses();
      }
      assert.ok(after >= before + 2 && after <= before + 6, `${before} then ${after}`);
      // A graceful restart: the master (the same pid) starts new children.
      const old = childrenOf(t.pid);
      t.signal(10); // SIGUSR1
      await waitUntil("new children", () => {
        const now = childrenOf(t.pid);
        return now.length >= 2 && now.some((p) => !old.includes(p));
      });
      // (The old children close their idle keep-alive connections, as without a restore.)
      await waitUntil("served after the reload", async () => {
        try {
          return (await accesses()) > 0;
        } catch {
          return false;
        }
      });
      assertRunning(t, "apache2");
      // A SIGTERM the master takes while it reads its configuration again is cleared when its
      // main loop starts over (mpm_event resets its shutdown flag there; no cryo involved): stop
      // it once it logged the restart's end and sleeps in that loop (pselect6, 270).
      await waitUntil("the master back in its main loop", () => {
        const restarts = readOr(`${work}/error.log`).match(/AH00489/g)?.length ?? 0;
        return restarts >= 2 &&
          Deno.readTextFileSync(`/proc/${t.pid}/syscall`).startsWith("270 ");
      });
      t.signal(15);
      const st = await t.wait().catch((e) => {
        // What the master and its children were doing makes a time-out explainable.
        const of = (pid: number) => {
          try {
            const status = Deno.readTextFileSync(`/proc/${pid}/status`).split("\n")
              .filter((l) => /^(State|SigPnd|ShdPnd|SigBlk|SigCgt)/.test(l)).join(" ");
            return `${pid}: ${status}; syscall ${
              Deno.readTextFileSync(`/proc/${pid}/syscall`).trim()
            }`;
          } catch {
            return `${pid}: gone`;
          }
        };
        throw new Error(
          `${e.message}; master ${of(t.pid)}; children ${
            childrenOf(t.pid).map(of).join("; ")
          }; error.log:\n${readOr(`${work}/error.log`)}`,
        );
      });
      assert.deepEqual(st.kind === "exited" ? st.code : st, 0, readOr(`${work}/error.log`));
    } finally {
      conn.close();
      // Children forked by the reload, killed with the rest if the test fails before the end.
      for (const p of childrenOf(t.pid)) adoptPid(p);
    }
  }),
});

const tmuxPath = need("tmux", "tmux");

Deno.test({
  name:
    "the node REPL in tmux (raw-mode terminal, a variable, a running setInterval) goes on after restore",
  ignore: !node || !tmuxPath,
  fn: withTargets(async () => {
    becomeSubreaper(); // the tmux server daemonizes: it becomes our child when its parent exits
    const work = await tempDir("cryo-node-repl-");
    const sock = `${work}/sock`;
    const tmux = (...args: string[]) =>
      runCommand([tmuxPath!, "-S", sock, "-f", "/dev/null", ...args]);
    const pane = async () => (await tmux("capture-pane", "-p", "-t", "t")).stdout;
    const started = await tmux(
      "new-session",
      "-d",
      "-s",
      "t",
      "-x",
      "100",
      "-y",
      "30",
      `env -i TERM=screen HOME=${work} NODE_REPL_HISTORY= ${node} --interactive`,
    );
    assert.equal(started.code, 0, started.stderr);
    const server = Number((await tmux("display", "-p", "#{pid}")).stdout.trim());
    const srv = adoptPid(server);
    const repl = Number((await tmux("display", "-p", "-t", "t", "#{pane_pid}")).stdout.trim());
    adoptPid(repl);
    try {
      await waitUntil("the prompt", async () => /^>/m.test(await pane()));
      await tmux(
        "send-keys",
        "-t",
        "t",
        "let a = 40 + 1; globalThis.n = 0; setInterval(() => n++, 10); 'set-' + a",
        "Enter",
      );
      await waitUntil("the REPL answered", async () => (await pane()).includes("'set-41'"));
      // The tmux client above has exited: wait until the server has closed its connection
      // (until then its accepted socket names the client in SO_PEERCRED: refused).
      let dir = "";
      for (let tries = 0;; tries++) {
        dir = `${work}/image${tries}`;
        try {
          await checkpoint(server, { dir });
          break;
        } catch (e) {
          if (tries >= 50 || !/SO_PEERCRED/.test(String(e))) throw e;
          await sleep(100);
        }
      }
      await waitUntil(
        "the server is gone",
        () => srv.poll() !== undefined || !readOr(`/proc/${server}/stat`),
      );
      const tree = await restore(dir);
      srv.resetAfterRestore();
      assert.deepEqual([...tree.pids].sort(), [server, repl].sort());
      await tmux("send-keys", "-t", "t", "const m = n; 'got-' + (a + 1)", "Enter");
      await waitUntil(
        "the restored REPL answered",
        async () => (await pane()).includes("'got-42'"),
      );
      await sleep(200);
      await tmux("send-keys", "-t", "t", "'later-' + (n > m)", "Enter");
      await waitUntil("the interval ran on", async () => (await pane()).includes("'later-true'"));
    } finally {
      await tmux("kill-server");
    }
  }),
});

Deno.test({
  name:
    "python3 multiprocessing: a Pool halfway through imap finishes after restore; a Manager is refused by name",
  ignore: !python3,
  fn: withTargets(async () => {
    const work = await tempDir("cryo-mp-");
    const out = `${work}/out`;
    await Deno.writeTextFile(
      `${work}/mp.py`,
      // multiprocessing's pymp-* directory in the test's own (a killed Manager leaves it).
      `import multiprocessing as mp, os, sys, time, tempfile
tempfile.tempdir = ${JSON.stringify(work)}
def slow(x):
    time.sleep(0.01)
    return x * x
if __name__ == "__main__":
    if sys.argv[1] == "pool":
        with mp.Pool(2) as p:
            got = []
            for r in p.imap(slow, range(100)):
                got.append(r)
                with open("${out}.new", "w") as f:
                    f.write(f"{len(got)} {sum(got)}\\n")
                os.rename("${out}.new", "${out}")
    else:
        m = mp.Manager()
        d = m.dict()
        d["x"] = 1
        print("ready", flush=True)
        time.sleep(1000)
`,
    );
    const pool = await startTarget(python3!, [`${work}/mp.py`, "pool"]);
    const now = () => (readOr(out) || "0 0").trim().split(" ").map(Number);
    await waitUntil("10 results", () => now()[0] >= 10);
    const rt = await dumpKillRestore(pool);
    assert.equal(rt.tree.pids.length, 3, `restored pids ${rt.tree.pids}`); // the pool, 2 workers
    assert.ok(now()[0] < 100, "the pool had ended");
    const st = await pool.wait();
    assert.deepEqual(st.kind === "exited" ? st.code : st, 0, pool.output());
    assert.deepEqual(now(), [100, (99 * 100 * 199) / 6]);

    // The manager's server process made the listener the parent's client is connected to:
    // both ends' peer credentials name the other process (see docs/COMPATIBILITY.md).
    const manager = await startTarget(python3!, [`${work}/mp.py`, "manager"]);
    await manager.waitFor(/^ready$/m);
    for (const p of childrenOf(manager.pid)) adoptPid(p);
    await assertDumpRefused(manager.pid, (_items, message) => {
      assert.match(
        message,
        /its peer credentials \(SO_PEERCRED\) name process \d+, but process \d+ would re-create it/,
      );
    });
    assertRunning(manager, "manager");
  }),
});

Deno.test({
  name: "node with libuv's io_uring (UV_USE_IO_URING=1) is refused by name and runs on",
  ignore: !node,
  fn: withTargets(async () => {
    const work = await tempDir("cryo-node-uring-");
    await Deno.writeTextFile(
      `${work}/fs.js`,
      `const fs = require("fs");\nsetInterval(() => fs.readFile("/etc/hostname", () => {}), 20);\n`,
    );
    const t = await startTarget("/usr/bin/env", ["UV_USE_IO_URING=1", node!, `${work}/fs.js`]);
    const rings = () => {
      try {
        return [...Deno.readDirSync(`/proc/${t.pid}/fd`)].filter((e) =>
          Deno.readLinkSync(`/proc/${t.pid}/fd/${e.name}`) === "anon_inode:[io_uring]"
        ).length;
      } catch {
        return 0;
      }
    };
    // libuv sets its rings up at the first file operation (node starts in ~0.1 s).
    for (let i = 0; i < 100 && rings() === 0 && t.poll() === undefined; i++) await sleep(50);
    if (t.poll() !== undefined || rings() === 0) {
      console.error("restore_real_programs4_test: this node does not use io_uring; skipping");
      return;
    }
    await assertDumpRefused(t.pid, (_items, message) => {
      assert.match(
        message,
        /anon_inode:\[io_uring\]\): io_uring: its rings and in-flight requests/,
      );
    });
    assertRunning(t, "node");
  }),
});

const timeoutCmd = need("timeout", "coreutils");

Deno.test({
  name: "coreutils timeout (a POSIX timer, a child) still kills its child on time after restore",
  ignore: !timeoutCmd,
  fn: withTargets(async () => {
    const start = Date.now();
    const t = await startTarget(timeoutCmd!, ["3", "sleep", "100"]);
    await waitUntil("the child", () => commsOf(childrenOf(t.pid)).includes("sleep"));
    const rt = await dumpKillRestore(t);
    assert.equal(rt.tree.pids.length, 2);
    assert.ok(Date.now() - start < 3000, "the timer expired before the restore");
    const st = await t.wait();
    const elapsed = Date.now() - start;
    assert.deepEqual(st.kind === "exited" ? st.code : st, 124, t.output());
    assert.ok(elapsed >= 3000, `exited after ${elapsed} ms`);
  }),
});

const scriptCmd = need("script", "bsdutils");

Deno.test({
  name: "script (a pty, a signalfd) records on after restore and exits with its child",
  ignore: !scriptCmd,
  fn: withTargets(async () => {
    const work = await tempDir("cryo-script-");
    const log = `${work}/typescript`;
    const t = await startTarget(scriptCmd!, [
      "-q",
      "-f",
      "-c",
      'i=0; while :; do i=$((i+1)); echo "line$i"; sleep 0.05; done',
      log,
    ]);
    const lines = () => [...readOr(log).matchAll(/^line(\d+)\r?$/gm)].map((m) => Number(m[1]));
    await waitUntil("5 lines", () => lines().length >= 5);
    const rt = await dumpKillRestore(t);
    assert.ok(rt.tree.pids.length >= 2, `restored pids ${rt.tree.pids}`);
    const at = lines().length;
    await waitUntil("10 more lines", () => lines().length >= at + 10);
    const got = lines();
    assert.deepEqual(got, got.map((_, i) => i + 1), "the lines through the pty");
    // The shell's exit reaches script through its signalfd (SIGCHLD).
    const shell = childrenOf(t.pid).find((p) =>
      commsOf([p])[0] === "bash" || commsOf([p])[0] === "sh"
    );
    assert.ok(shell, `script's children ${childrenOf(t.pid)}`);
    Deno.kill(shell!, "SIGTERM");
    const st = await t.wait();
    assert.equal(st.kind, "exited", JSON.stringify(st));
  }),
});

const openssl = findProgram("openssl");

Deno.test({
  name:
    "python3 ForkingTCPServer with TLS (ssl): a forked child's TLS session goes on after restore",
  ignore: !python3 || !openssl,
  fn: withTargets(async () => {
    const work = await tempDir("cryo-pytls-");
    const port = freePort();
    // A CA and a certificate it signed for localhost (rustls takes no self-signed leaf).
    const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    await Deno.writeTextFile(`${work}/ext`, "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
    for (
      const args of [
        [
          "req",
          "-x509",
          ...ec,
          "-days",
          "2",
          "-subj",
          "/CN=cryo-ca",
          "-keyout",
          "ca.key",
          "-out",
          "ca.pem",
        ],
        ["req", ...ec, "-subj", "/CN=localhost", "-keyout", "key.pem", "-out", "req.csr"],
        [
          "x509",
          "-req",
          "-in",
          "req.csr",
          "-CA",
          "ca.pem",
          "-CAkey",
          "ca.key",
          "-CAcreateserial",
          "-days",
          "2",
          "-extfile",
          "ext",
          "-out",
          "cert.pem",
        ],
      ]
    ) {
      const made = await runCommand([openssl!, ...args], { cwd: work });
      assert.equal(made.code, 0, made.stderr);
    }
    await Deno.writeTextFile(
      `${work}/server.py`,
      `import os, socketserver, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[2], sys.argv[3])
class Handler(socketserver.StreamRequestHandler):
    def setup(self):
        self.request = ctx.wrap_socket(self.request, server_side=True)
        super().setup()
    def handle(self):
        n = 0
        for line in self.rfile:
            n += 1
            self.wfile.write(f"n={n} pid={os.getpid()} line={line.decode().strip()}\\n".encode())
            self.wfile.flush()
class Server(socketserver.ForkingTCPServer):
    allow_reuse_address = True
Server(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
`,
    );
    const t = await startTarget(python3!, [
      `${work}/server.py`,
      String(port),
      `${work}/cert.pem`,
      `${work}/key.pem`,
    ]);
    await waitListening(t, port);
    const caCerts = [Deno.readTextFileSync(`${work}/ca.pem`)];
    const conn = await Deno.connectTls({ hostname: "127.0.0.1", port, caCerts });
    try {
      const one = fields(await readUntilLine(conn, "a\n"));
      await readUntilLine(conn, "b\n");
      assert.equal(one.n, "1");
      const rt = await dumpKillRestore(t, OPT_IN, OPT_IN);
      assert.ok(rt.tree.pids.includes(Number(one.pid)), `restored pids ${rt.tree.pids}`);
      const two = fields(await readUntilLine(conn, "c\n"));
      assert.deepEqual([two.n, two.pid, two.line], ["3", one.pid, "c"]);
      const fresh = await Deno.connectTls({ hostname: "127.0.0.1", port, caCerts });
      try {
        const f = fields(await readUntilLine(fresh, "d\n"));
        assert.equal(f.n, "1");
        assert.notEqual(f.pid, one.pid);
      } finally {
        fresh.close();
      }
      assertRunning(t, "server");
    } finally {
      conn.close();
      for (const p of childrenOf(t.pid)) adoptPid(p);
    }
  }),
});

const valgrind = need("valgrind", "valgrind");
const gcc = findProgram("gcc");

Deno.test({
  name:
    "valgrind (its fds just under the NOFILE hard limit, no [vdso]) runs its program on after restore",
  ignore: !valgrind || !gcc,
  fn: withTargets(async () => {
    const work = await tempDir("cryo-valgrind-");
    const out = `${work}/out`;
    await Deno.writeTextFile(
      `${work}/loop.c`,
      `#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
  long *a = malloc(1000 * sizeof *a), sum = 0;
  for (long n = 1;; n++) {
    a[n % 1000] = n;
    sum += a[n % 1000];
    FILE *f = fopen(argv[1], "w");
    fprintf(f, "n=%ld sum=%ld\\n", n, sum);
    fclose(f);
    usleep(10000);
  }
}
`,
    );
    const built = await runCommand([gcc!, "-O1", "-o", `${work}/loop`, `${work}/loop.c`]);
    assert.equal(built.code, 0, built.stderr);
    // No gdbserver: its pipes in /tmp outlive a killed valgrind.
    const t = await startTarget(valgrind!, [
      "-q",
      "--vgdb=no",
      "--error-exitcode=3",
      `${work}/loop`,
      out,
    ]);
    const now = () => fields(readOr(out) || "n=0 sum=0");
    await waitUntil("10 rounds", () => Number(now().n) >= 10);
    await dumpKillRestore(t);
    const one = now();
    await waitUntil("10 more rounds", () => Number(now().n) >= Number(one.n) + 10);
    const two = now();
    const n = Number(two.n);
    assert.equal(Number(two.sum), (n * (n + 1)) / 2, JSON.stringify(two));
    assertRunning(t, "valgrind");
    assert.equal(t.output(), "", "valgrind reported errors");
  }),
});

const gpgAgent = need("gpg-agent", "gpg-agent");
const gpgConnect = findProgram("gpg-connect-agent");
const gpgconf = findProgram("gpgconf");

Deno.test({
  name:
    "gpg-agent --daemon (its listeners made by the launcher that forked it and exited) serves clients after restore",
  ignore: !gpgAgent || !gpgConnect || !gpgconf || !python3,
  fn: withTargets(async () => {
    const home = await tempDir("cryo-gpg-");
    const launcher = await startTarget(gpgAgent!, [
      "--homedir",
      home,
      "--daemon",
      "--no-detach",
    ]);
    const ask = async (...cmds: string[]) => {
      const r = await runCommand([
        gpgConnect!,
        "--homedir",
        home,
        "--no-autostart",
        ...cmds,
        "/bye",
      ]);
      return r.code === 0 ? r.stdout : "";
    };
    await waitUntil("the agent", async () => /^D \d+$/m.test(await ask("GETINFO pid")));
    const agent = Number((await ask("GETINFO pid")).match(/^D (\d+)$/m)![1]);
    const t = adoptPid(agent); // our child once the launcher exited (we are a subreaper)
    assert.notEqual(agent, launcher.pid);
    await launcher.wait();
    // Each listener's peer credentials (what a client's SO_PEERCRED shows) name the launcher,
    // which called listen() and is gone: a helper with its pid listens again at restore.
    await dumpKillRestore(t);
    assert.match(await ask("GETINFO pid", "GETINFO version"), new RegExp(`^D ${agent}\nOK\nD \\d`));
    const sock = (await runCommand([gpgconf!, "--homedir", home, "--list-dirs", "agent-socket"]))
      .stdout.trim();
    const cred = await runCommand([
      python3!,
      "-c",
      "import socket,struct,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); " +
      "print(struct.unpack('3i', s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[0])",
      sock,
    ]);
    assert.equal(cred.stdout.trim(), String(launcher.pid), cred.stderr);
    assertRunning(t, "gpg-agent");
  }),
});
