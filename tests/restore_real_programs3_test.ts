/**
 * Still more real programs from Debian across dump, kill and restore, each
 * checked from outside (skipped, with a message, when not installed):
 *
 * - OpenSSH's sshd (its own config, host key and port) with an interactive
 *   ssh session on a pty, a background job, `cat` in the foreground and a
 *   forwarded port (ssh -L): after the restore the cat reads on, ^C stops
 *   it, the same shell runs commands and kills its job, the forwarded
 *   connection goes on and new ones are forwarded, and a new login works;
 * - an ssh client forwarding a port (-N -L) to a server outside the tree:
 *   its encrypted session goes on (forwarded connections, keepalives);
 * - a Go net/http server (goroutines, many threads, epoll, futexes, signal
 *   handlers), built with cgo and static, with a keep-alive client; a Go
 *   program under async preemption (SIGURG), GC and signal.Notify;
 * - haproxy in master-worker mode proxying an open connection to a backend
 *   in this test; after the restore the connection goes on and a reload
 *   (SIGUSR2: the master re-executes itself) forks a new worker;
 * - varnish (a manager and a child of another user, a malloc cache, stats
 *   in shared files) serving hits from its cache after the restore;
 * - squid (its pinger off) proxying on a client's keep-alive connection;
 * - unbound (two threads) answering DNS over UDP;
 * - PHP's built-in web server with two forked workers;
 * - a Ruby TCPServer with a thread per client and a ticker thread;
 * - an Erlang VM (beam.smp: ~20 threads and its erl_child_setup child)
 *   counting, and serving TCP (gen_tcp, a process per client, ETS);
 * - gunicorn pre-forking two workers (their heartbeat files are deleted
 *   mkstemp files, opened with O_NOFOLLOW): each worker keeps its request
 *   count;
 * - uWSGI with a master and two workers: each worker counts on, and so does
 *   the total in the stats memory they share;
 * - supervisord (its control socket bound at a temporary name and renamed)
 *   with a child counting: the child goes on, supervisorctl status and
 *   restart work after the restore;
 * - mosquitto (an MQTT broker) with a subscribed client outside the tree:
 *   a message published after the restore reaches it;
 * - rsyslogd receiving syslog over UDP and writing a file;
 * - atd: a job queued with `at` after the restore runs (at finds the
 *   daemon by its pid file and signals it); skipped when an atd runs;
 * - Xvfb (an X server) with a property on its root window, served to new
 *   clients after the restore (its clients are outside the tree: an X
 *   client inside the tree is refused, see docs/COMPATIBILITY.md).
 */

import { childrenOf, commsOf } from "./helpers/proc.ts";
import assert from "node:assert/strict";
import { dumpKillRestore } from "./helpers/roundtrip.ts";
import { startTarget, type Target, withTargets } from "./helpers/targets.ts";
import { tempDir } from "./helpers/fs.ts";
import {
  exchange,
  findProgram,
  freePort,
  needProgram,
  onFreshConnection,
  readUntil,
  waitListening,
} from "./helpers/servers.ts";
import { repoRoot, runCommand } from "./helpers/commands.ts";
import { sleep, waitUntil } from "./helpers/wait.ts";

const OPT_IN = { optIns: ["tcp-established"] };

/** The path of program `name` (a line on stderr when the tests needing it skip). */
const need = (name: string, pkg: string) => needProgram("restore_real_programs3_test", name, pkg);

const enc = new TextEncoder();
const dec = new TextDecoder();

/** One GET on a fresh connection (HTTP/1.0, closed by the server); returns the body. */
async function httpGet10(port: number, path: string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(enc.encode(`GET ${path} HTTP/1.0\r\nHost: localhost\r\n\r\n`));
    let text = "";
    const buf = new Uint8Array(4096);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      text += dec.decode(buf.subarray(0, n));
    }
    const head = text.indexOf("\r\n\r\n");
    assert.match(text, /^HTTP\/1\.[01] 200 /, `reply: ${JSON.stringify(text)}`);
    return text.slice(head + 4);
  } finally {
    conn.close();
  }
}

const sshd = need("sshd", "openssh-server");
const ssh = findProgram("ssh");
const sshKeygen = findProgram("ssh-keygen");

/** An ssh client on pipes, its output collected. */
interface SshClient {
  child: Deno.ChildProcess;
  write(text: string): Promise<void>;
  /** Waits until the output contains `text` (5 s at most). */
  until(text: string): Promise<void>;
  output(): string;
}

function sshArgs(work: string, port: number): string[] {
  return [
    "-i",
    `${work}/user`,
    "-p",
    String(port),
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "BatchMode=yes",
    "-o",
    "LogLevel=ERROR",
    "root@127.0.0.1",
  ];
}

function startSsh(work: string, port: number, extra: string[] = []): SshClient {
  const child = new Deno.Command(ssh!, {
    args: ["-tt", ...extra, ...sshArgs(work, port)],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let out = "";
  const collect = async (s: ReadableStream<Uint8Array>) => {
    for await (const c of s) out += dec.decode(c);
  };
  collect(child.stdout).catch(() => {});
  collect(child.stderr).catch(() => {});
  const writer = child.stdin.getWriter();
  return {
    child,
    write: (text) => writer.write(enc.encode(text)),
    output: () => out,
    until: (text) =>
      waitUntil(`ssh output ${JSON.stringify(text)}:\n${out}`, () => out.includes(text), 5000),
  };
}

Deno.test({
  name:
    "sshd with an ssh session (pty, a job, a foreground cat, a forwarded port) goes on after restore",
  ignore: !sshd || !ssh || !sshKeygen,
  fn: withTargets(async () => {
    const work = await tempDir("cryo-sshd-");
    const port = freePort();
    await sshdSetup(work, port);
    const t = await startTarget(sshd!, ["-D", "-e", "-f", `${work}/sshd_config`]);
    await waitListening(t, port);
    // The session forwards a local port to an echo server in this test (ssh -L): sshd's
    // session process holds the forwarded TCP connection.
    const upstream = startUpstream();
    const forwarded = freePort();
    const client = startSsh(work, port, ["-L", `${forwarded}:127.0.0.1:${upstream.port}`]);
    let tunnel: Deno.Conn | undefined;
    try {
      // A shell variable only this session's shell holds, its pid, a background job.
      await client.write("X=4$((1+1)); sleep 1000 & echo one-$((2+3))-$$\n");
      await client.until("one-5-");
      const shellPid = client.output().match(/one-5-(\d+)/)![1];
      await waitUntil("the forwarded port", async () => {
        try {
          tunnel = await Deno.connect({ hostname: "127.0.0.1", port: forwarded });
          return true;
        } catch {
          return false;
        }
      });
      assert.equal(await exchange(tunnel!, "f1\n", "\n"), "up:f1\n");
      // A foreground program reading the terminal.
      await client.write("cat -n\n");
      await waitUntil(
        "cat on the terminal",
        () => commsOf(childrenOf(Number(shellPid))).includes("cat"),
      );
      await client.write("line1\n");
      await client.until("1\tline1");
      const rt = await dumpKillRestore(t, OPT_IN, OPT_IN);
      assert.ok(rt.tree.pids.length >= 5, `restored pids ${rt.tree.pids}`);
      await client.write("line2\n");
      await client.until("2\tline2");
      assert.equal(await exchange(tunnel!, "f2\n", "\n"), "up:f2\n");
      // ^C reaches the foreground cat through the terminal; the shell's job table is whole.
      await client.write("\x03");
      // (^C flushes the terminal's input: the next line is typed once cat is gone.)
      await waitUntil("cat's exit", () => !commsOf(childrenOf(Number(shellPid))).includes("cat"));
      await client.write("echo two-$X-$$; tty; jobs; kill %1; wait; echo killed-$?\n");
      await client.until(`two-42-${shellPid}`);
      await client.until("killed-0");
      assert.match(client.output(), /\/dev\/pts\/\d+\r\n\[1\]\+ +Running +sleep 1000 &/);
      // A new forwarded connection and a new login through the restored listener.
      const tunnel2 = await Deno.connect({ hostname: "127.0.0.1", port: forwarded });
      try {
        assert.equal(await exchange(tunnel2, "f3\n", "\n"), "up:f3\n");
      } finally {
        tunnel2.close();
      }
      const fresh = await runCommand([ssh!, ...sshArgs(work, port), "echo fresh-$((6*7))"]);
      assert.equal(fresh.code, 0, fresh.stderr);
      assert.equal(fresh.stdout, "fresh-42\n");
      // The session ends cleanly: ssh exits with the shell's status.
      tunnel!.close();
      tunnel = undefined;
      await client.write("exit 3\n");
      const status = await client.child.status;
      assert.equal(status.code, 3, client.output());
      assert.equal(t.poll(), undefined, `the restored sshd exited:\n${t.output()}`);
    } finally {
      try {
        client.child.kill("SIGKILL");
      } catch { /* exited */ }
      await client.child.status;
      tunnel?.close();
      await upstream.close();
    }
  }),
});

/** Writes host and user keys and an sshd config for 127.0.0.1:`port` into `work`. */
async function sshdSetup(work: string, port: number): Promise<void> {
  for (const key of ["host", "user"]) {
    const gen = await runCommand([
      sshKeygen!,
      "-q",
      "-t",
      "ed25519",
      "-N",
      "",
      "-f",
      `${work}/${key}`,
    ]);
    assert.equal(gen.code, 0, gen.stderr);
  }
  await Deno.copyFile(`${work}/user.pub`, `${work}/authorized_keys`);
  await Deno.mkdir("/run/sshd", { recursive: true }); // sshd's privilege separation directory
  await Deno.writeTextFile(
    `${work}/sshd_config`,
    `Port ${port}
ListenAddress 127.0.0.1
HostKey ${work}/host
PidFile none
AuthorizedKeysFile ${work}/authorized_keys
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
`,
  );
}

Deno.test({
  name: "an ssh client forwarding a port (ssh -N -L) keeps its encrypted session after restore",
  ignore: !sshd || !ssh || !sshKeygen,
  fn: withTargets(async () => {
    const work = await tempDir("cryo-ssh-client-");
    const port = freePort();
    await sshdSetup(work, port);
    const server = await startTarget(sshd!, ["-D", "-e", "-f", `${work}/sshd_config`]);
    await waitListening(server, port);
    const upstream = startUpstream();
    const forwarded = freePort();
    // The client is the tree; sshd (outside it) sees the same TCP connection go on.
    const t = await startTarget(ssh!, [
      "-N",
      "-L",
      `${forwarded}:127.0.0.1:${upstream.port}`,
      "-o",
      "ServerAliveInterval=1",
      ...sshArgs(work, port),
    ]);
    const tunnels: Deno.Conn[] = [];
    try {
      await waitListening(t, forwarded);
      tunnels.push(await Deno.connect({ hostname: "127.0.0.1", port: forwarded }));
      assert.equal(await exchange(tunnels[0], "f1\n", "\n"), "up:f1\n");
      await dumpKillRestore(t, OPT_IN, OPT_IN);
      assert.equal(await exchange(tunnels[0], "f2\n", "\n"), "up:f2\n");
      tunnels.push(await Deno.connect({ hostname: "127.0.0.1", port: forwarded }));
      assert.equal(await exchange(tunnels[1], "f3\n", "\n"), "up:f3\n");
      // Keepalives (every second) go over the restored connection and are answered.
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(await exchange(tunnels[1], "f4\n", "\n"), "up:f4\n");
      assert.equal(t.poll(), undefined, `the restored ssh exited:\n${t.output()}`);
      assert.equal(server.poll(), undefined, `sshd exited:\n${server.output()}`);
    } finally {
      for (const c of tunnels) c.close();
      await upstream.close();
    }
  }),
});

const go = need("go", "golang-go");

/** GET /n on a keep-alive connection: [requests, ticks]. */
async function goCount(conn: Deno.Conn): Promise<[number, number]> {
  await conn.write(enc.encode("GET /n HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  const reply = await readUntil(conn, (t) => /\r\n\r\n\d+ \d+\n$/.test(t));
  const m = reply.match(/(\d+) (\d+)\n$/)!;
  return [Number(m[1]), Number(m[2])];
}

for (const cgo of [true, false]) {
  Deno.test({
    name: `a Go net/http server (${
      cgo ? "cgo" : "static"
    }) keeps its keep-alive client and its goroutines after restore`,
    ignore: !go,
    fn: withTargets(async () => {
      const work = await tempDir("cryo-go-");
      const bin = await buildGo("go_http_counter", work, cgo);
      const port = freePort();
      const t = await startTarget(bin, [String(port)]);
      await waitListening(t, port);
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        assert.equal((await goCount(conn))[0], 1);
        await waitUntil("ticks", async () => (await goCount(conn))[1] >= 5);
        const [n0, ticks0] = await goCount(conn);
        assert.ok(Deno.readDirSync(`/proc/${t.pid}/task`).toArray().length >= 3, "threads");
        await dumpKillRestore(t, OPT_IN, OPT_IN);
        const [n1, ticks1] = await goCount(conn);
        assert.equal(n1, n0 + 1, "the request count of the same connection");
        assert.ok(ticks1 >= ticks0, `ticks ${ticks0} -> ${ticks1}`);
        await waitUntil("the ticker goroutine", async () => (await goCount(conn))[1] >= ticks1 + 5);
        assert.ok(
          (await onFreshConnection(port, (fresh) => goCount(fresh)))[0] > n1,
          "a new client",
        );
        assert.equal(t.poll(), undefined, `the restored program exited:\n${t.output()}`);
      } finally {
        conn.close();
      }
    }),
  });
}

/** Builds tests/targets/<name>.go into `work` (cgo or static); returns the binary's path. */
async function buildGo(name: string, work: string, cgo: boolean): Promise<string> {
  const bin = `${work}/${name}`;
  const built = await runCommand([go!, "build", "-o", bin, `${repoRoot}tests/targets/${name}.go`], {
    cwd: work,
    env: {
      GOCACHE: `${repoRoot}tests/.cache/go-build`,
      GOPATH: `${work}/gopath`,
      GO111MODULE: "off",
      CGO_ENABLED: cgo ? "1" : "0",
    },
  });
  assert.equal(built.code, 0, built.stderr);
  return bin;
}

Deno.test({
  name: "a Go program under preemption (SIGURG), GC and signal.Notify goes on after restore",
  ignore: !go,
  fn: withTargets(async () => {
    const work = await tempDir("cryo-go-signals-");
    const t = await startTarget(await buildGo("go_runtime_signals", work, true));
    await waitUntil("five ticks", () => ticksOf(t).length >= 5);
    t.signal(10 /* SIGUSR1 */);
    await t.waitFor(/^sig user defined signal 1 gc \d+ spins>0 true$/m);
    await dumpKillRestore(t);
    const last = ticksOf(t).at(-1)!;
    await waitUntil("five more ticks", () => (ticksOf(t).at(-1) ?? 0) >= last + 5);
    // One at a time: signals sent while one is pending merge (in the kernel and in Go).
    for (let i = 2; i <= 4; i++) {
      t.signal(10 /* SIGUSR1 */);
      await waitUntil(`signal ${i}`, () => sigLines(t).length >= i, 5000).catch((e) => {
        throw new Error(`${e.message}:\n${t.output().slice(-600)}`);
      });
    }
    const gcs = sigLines(t).map((l) => Number(l.match(/gc (\d+)/)![1]));
    assert.ok(gcs.at(-1)! > gcs[0], `GC cycles after the restore: ${gcs}`);
    const ticks = ticksOf(t);
    assert.deepEqual(ticks, ticks.map((_, i) => i + 1), "the ticks did not go on");
    t.signal(15 /* SIGTERM */);
    assert.deepEqual(await t.wait(), { kind: "exited", pid: t.pid, code: 7 }, t.output());
  }),
});

/** The "sig ..." lines a Go target printed. */
function sigLines(t: Target): string[] {
  return t.output().match(/^sig user defined signal 1 gc \d+ spins>0 true$/gm) ?? [];
}

const haproxy = need("haproxy", "haproxy");

/** Whether haproxy master `pid` catches SIGUSR2 and waits in epoll_wait (its loop). */
function masterSettled(pid: number): boolean {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const caught = BigInt(`0x${status.match(/^SigCgt:\s*([0-9a-f]+)$/m)![1]}`);
  const usr2 = (caught >> 11n) & 1n;
  return usr2 === 1n && Deno.readTextFileSync(`/proc/${pid}/syscall`).startsWith("232 ");
}

/** An echo server in this test that prefixes "up:"; close() stops it. */
function startUpstream(): { port: number; close(): Promise<void> } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const serve = async (c: Deno.Conn) => {
    conns.add(c);
    const buf = new Uint8Array(4096);
    try {
      for (;;) {
        const n = await c.read(buf);
        if (n === null) break;
        await c.write(enc.encode("up:" + dec.decode(buf.subarray(0, n))));
      }
    } catch { /* closed */ }
    conns.delete(c);
    try {
      c.close();
    } catch { /* closed */ }
  };
  const loop = (async () => {
    try {
      for await (const c of listener) serve(c);
    } catch { /* closed */ }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    async close() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      await loop;
    },
  };
}

Deno.test({
  name: "haproxy (master-worker) proxies the same connection after restore, then reloads",
  ignore: !haproxy,
  fn: withTargets(async () => {
    const upstream = startUpstream();
    const work = await tempDir("cryo-haproxy-");
    const port = freePort();
    await Deno.writeTextFile(
      `${work}/haproxy.cfg`,
      `defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend f
  bind 127.0.0.1:${port}
  default_backend b
backend b
  server s1 127.0.0.1:${upstream.port}
`,
    );
    const t = await startTarget(haproxy!, ["-W", "-db", "-f", `${work}/haproxy.cfg`]);
    await waitListening(t, port);
    // The master re-executes itself once its worker runs; until the new image has its handlers
    // (SIGUSR2 ignored across the exec discards one sent then: seen with strace, no cryo
    // involved), a reload signal is lost. Dump and signal a master settled in its loop.
    await waitUntil("the master in its loop, catching SIGUSR2", () => masterSettled(t.pid));
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      assert.equal(await exchange(conn, "one\n", "\n"), "up:one\n");
      const [worker] = childrenOf(t.pid);
      const rt = await dumpKillRestore(t, OPT_IN, OPT_IN);
      assert.deepEqual(rt.tree.pids.toSorted(), [t.pid, worker].toSorted());
      assert.equal(await exchange(conn, "two\n", "\n"), "up:two\n");
      assert.equal(
        await onFreshConnection(port, (fresh) => exchange(fresh, "three\n", "\n")),
        "up:three\n",
      );
      // A reload: the master re-executes itself and forks a new worker; the
      // old one keeps serving the open connection.
      Deno.kill(t.pid, "SIGUSR2");
      await waitUntil("a new worker", () => childrenOf(t.pid).some((p) => p !== worker))
        .catch((e) => {
          // What haproxy said (a failed re-execution or bind) makes a time-out explainable.
          const status = Deno.readTextFileSync(`/proc/${t.pid}/status`).split("\n")
            .filter((l) => /^(State|Sig|ShdPnd)/.test(l)).join("; ") +
            `; syscall ${Deno.readTextFileSync(`/proc/${t.pid}/syscall`).trim()}`;
          throw new Error(
            `${e.message}; children ${
              childrenOf(t.pid)
            }; master ${status}; haproxy:\n${t.output()}`,
          );
        });
      const next = childrenOf(t.pid).find((p) => p !== worker)!;
      const after = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        assert.equal(await exchange(after, "four\n", "\n"), "up:four\n");
      } finally {
        after.close();
      }
      assert.equal(await exchange(conn, "five\n", "\n"), "up:five\n");
      conn.close();
      await waitUntil("the old worker's exit", () => !childrenOf(t.pid).includes(worker));
      assert.match(t.output(), new RegExp(`Former worker \\(${worker}\\) exited with code 0`));
      assert.deepEqual(childrenOf(t.pid), [next]);
      assert.equal(t.poll(), undefined, `the restored haproxy exited:\n${t.output()}`);
    } finally {
      try {
        conn.close();
      } catch { /* closed */ }
      await upstream.close();
    }
  }),
});

const varnishd = need("varnishd", "varnish");
const varnishstat = findProgram("varnishstat");

Deno.test({
  name: "varnish (manager and child, its cache and shared stats) serves from cache after restore",
  ignore: !varnishd || !varnishstat,
  fn: withTargets(async () => {
    let fetched = 0;
    const backend = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () => {
      fetched++;
      return new Response(`backend ${fetched}\n`, { headers: { "cache-control": "max-age=300" } });
    });
    try {
      // The child runs as varnish's own user: its files must be readable by it.
      const work = await tempDir("cryo-varnish-");
      await Deno.chmod(work, 0o755);
      await Deno.writeTextFile(
        `${work}/default.vcl`,
        `vcl 4.1;\nbackend b { .host = "127.0.0.1"; .port = "${backend.addr.port}"; }\n`,
      );
      await Deno.chmod(`${work}/default.vcl`, 0o644);
      const port = freePort();
      const t = await startTarget(varnishd!, [
        "-F",
        "-n",
        `${work}/n`,
        "-a",
        `127.0.0.1:${port}`,
        "-f",
        `${work}/default.vcl`,
        "-s",
        "malloc,16m",
        "-T",
        "none",
      ]);
      await waitListening(t, port);
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      const get = async (c: Deno.Conn, path: string) => {
        await c.write(enc.encode(`GET ${path} HTTP/1.1\r\nHost: localhost\r\n\r\n`));
        return (await readUntil(c, (r) => /\r\n\r\nbackend \d+\n$/.test(r))).match(
          /backend \d+\n$/,
        )![0];
      };
      try {
        assert.equal(await get(conn, "/a"), "backend 1\n");
        assert.equal(await get(conn, "/b"), "backend 2\n");
        assert.equal(await get(conn, "/a"), "backend 1\n"); // a hit
        const rt = await dumpKillRestore(t, OPT_IN, OPT_IN);
        assert.equal(rt.tree.pids.length, 2, `restored pids ${rt.tree.pids}`);
        assert.equal(await get(conn, "/a"), "backend 1\n"); // hits from the restored cache
        assert.equal(await get(conn, "/b"), "backend 2\n");
        assert.equal(await onFreshConnection(port, (fresh) => get(fresh, "/c")), "backend 3\n"); // a miss: fetched
        assert.equal(fetched, 3);
        // The counters live in files both processes map shared; varnishstat reads them.
        // (Worker threads add their counts there now and then.)
        let stat = "";
        await waitUntil("three cache hits counted", async () => {
          const r = await runCommand([
            varnishstat!,
            "-1",
            "-n",
            `${work}/n`,
            "-f",
            "MAIN.cache_hit",
          ]);
          stat = r.stdout + r.stderr;
          return /^MAIN\.cache_hit +3 /m.test(stat);
        }, 8000).catch((e) => {
          throw new Error(`${e.message}: ${stat}`);
        });
        assert.equal(t.poll(), undefined, `the restored varnishd exited:\n${t.output()}`);
      } finally {
        conn.close();
      }
    } finally {
      await backend.shutdown();
    }
  }),
});

const squid = need("squid", "squid");

Deno.test({
  name: "squid (no pinger) proxies on the same client connection after restore",
  ignore: !squid,
  fn: withTargets(async () => {
    let fetched = 0;
    const backend = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () => {
      fetched++;
      return new Response(`backend ${fetched}\n`);
    });
    try {
      // squid runs as its own user (proxy): its directory must be writable by it.
      const work = await tempDir("cryo-squid-");
      await Deno.chmod(work, 0o777);
      const port = freePort();
      // The pinger helper holds raw ICMP sockets, which are refused: it is off.
      await Deno.writeTextFile(
        `${work}/squid.conf`,
        `http_port 127.0.0.1:${port}
http_access allow all
pid_filename none
cache_log ${work}/cache.log
access_log none
cache deny all
coredump_dir ${work}
pinger_enable off
`,
      );
      const t = await startTarget(squid!, ["-N", "-f", `${work}/squid.conf`]);
      await waitListening(t, port);
      const url = `http://127.0.0.1:${backend.addr.port}/`;
      const get = async (c: Deno.Conn) => {
        await c.write(
          enc.encode(`GET ${url} HTTP/1.1\r\nHost: 127.0.0.1:${backend.addr.port}\r\n\r\n`),
        );
        return (await readUntil(c, (r) => /\r\n\r\nbackend \d+\n$/.test(r))).match(
          /backend \d+\n$/,
        )![0];
      };
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        assert.equal(await get(conn), "backend 1\n");
        await dumpKillRestore(t, OPT_IN, OPT_IN);
        assert.equal(await get(conn), "backend 2\n");
        assert.equal(await onFreshConnection(port, (fresh) => get(fresh)), "backend 3\n");
        assert.equal(t.poll(), undefined, `the restored squid exited:\n${t.output()}`);
      } finally {
        conn.close();
      }
    } finally {
      await backend.shutdown();
    }
  }),
});

const unbound = need("unbound", "unbound");
const systemPython = findProgram("python3", "/usr/bin/python3");

/** Asks the DNS server on 127.0.0.1:`port` (UDP) for the A record of `name`; the address. */
async function dnsA(port: number, name: string): Promise<string> {
  const r = await runCommand([
    systemPython!,
    "-c",
    `import socket, struct, sys
q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(p)]) + p.encode() for p in sys.argv[2].split(".")) + b"\\0"
q += struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.sendto(q, ("127.0.0.1", int(sys.argv[1])))
print(".".join(str(b) for b in s.recv(512)[-4:]))`,
    String(port),
    name,
  ]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}

Deno.test({
  name: "unbound (two threads) answers DNS queries over UDP after restore",
  ignore: !unbound || !systemPython,
  fn: withTargets(async () => {
    const work = await tempDir("cryo-unbound-");
    const port = freePort();
    await Deno.writeTextFile(
      `${work}/unbound.conf`,
      `server:
  interface: 127.0.0.1@${port}
  num-threads: 2
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "${work}"
  pidfile: ""
  use-syslog: no
  local-zone: "cryo.test." static
  local-data: "a.cryo.test. IN A 10.1.2.3"
remote-control:
  control-enable: no
`,
    );
    const t = await startTarget(unbound!, ["-d", "-c", `${work}/unbound.conf`]);
    await waitListening(t, port);
    assert.equal(await dnsA(port, "a.cryo.test"), "10.1.2.3");
    await dumpKillRestore(t);
    for (let i = 0; i < 4; i++) assert.equal(await dnsA(port, "a.cryo.test"), "10.1.2.3");
    assert.equal(t.poll(), undefined, `the restored unbound exited:\n${t.output()}`);
  }),
});

const php = need("php", "php-cli");
const env = findProgram("env");

Deno.test({
  name: "PHP's built-in server with two workers serves after restore",
  ignore: !php || !env,
  fn: withTargets(async () => {
    const work = await tempDir("cryo-php-");
    await Deno.writeTextFile(`${work}/i.php`, `<?php echo "php ", 6 * 7, "\\n";`);
    const port = freePort();
    const t = await startTarget(env!, [
      "PHP_CLI_SERVER_WORKERS=2",
      php!,
      "-S",
      `127.0.0.1:${port}`,
      "-t",
      work,
    ]);
    await waitListening(t, port);
    await waitUntil("two workers", () => childrenOf(t.pid).length === 2);
    assert.equal(await httpGet10(port, "/i.php"), "php 42\n");
    const rt = await dumpKillRestore(t);
    assert.equal(rt.tree.pids.length, 3, `restored pids ${rt.tree.pids}`);
    for (let i = 0; i < 4; i++) assert.equal(await httpGet10(port, "/i.php"), "php 42\n");
    assert.equal(childrenOf(t.pid).length, 2);
    assert.equal(t.poll(), undefined, `the restored php exited:\n${t.output()}`);
  }),
});

const ruby = need("ruby", "ruby");

Deno.test({
  name: "a Ruby TCPServer with a thread per client keeps its client and its counter",
  ignore: !ruby,
  fn: withTargets(async () => {
    const work = await tempDir("cryo-ruby-");
    const port = freePort();
    await Deno.writeTextFile(
      `${work}/server.rb`,
      `require "socket"
n = 0
m = Mutex.new
ticks = 0
Thread.new { loop { sleep 0.01; ticks += 1 } }
s = TCPServer.new("127.0.0.1", ${port})
loop do
  Thread.new(s.accept) do |c|
    while (l = c.gets)
      k = m.synchronize { n += 1 }
      c.write("#{k} #{ticks > 0} #{l}")
    end
    c.close
  end
end
`,
    );
    const t = await startTarget(ruby!, [`${work}/server.rb`]);
    await waitListening(t, port);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      // Its ticker thread may not have ticked yet on a loaded machine; after the restore it has.
      assert.match(await exchange(conn, "a\n", "\n"), /^1 (true|false) a\n$/);
      await dumpKillRestore(t, OPT_IN, OPT_IN);
      assert.equal(await exchange(conn, "b\n", "\n"), "2 true b\n");
      assert.equal(
        await onFreshConnection(port, (fresh) => exchange(fresh, "c\n", "\n")),
        "3 true c\n",
      );
      assert.equal(t.poll(), undefined, `the restored ruby exited:\n${t.output()}`);
    } finally {
      conn.close();
    }
  }),
});

const erl = need("erl", "erlang-base");

/** The numbered lines "tick <i>" a program printed. */
function ticksOf(t: Target): number[] {
  return (t.output().match(/^tick (\d+)$/gm) ?? []).map((l) => Number(l.slice(5)));
}

Deno.test({
  name: "an Erlang VM (beam.smp, its threads and erl_child_setup) counts on after restore",
  ignore: !erl,
  fn: withTargets(async () => {
    const t = await startTarget(erl!, [
      "-noshell",
      "-eval",
      'L = fun F(N) -> io:format("tick ~p~n", [N]), timer:sleep(50), F(N + 1) end, L(1).',
    ]);
    await waitUntil("five ticks", () => ticksOf(t).length >= 5, 20000);
    const rt = await dumpKillRestore(t);
    assert.equal(rt.tree.pids.length, 2, `restored pids ${rt.tree.pids}`);
    const last = ticksOf(t).at(-1)!;
    await waitUntil("five more ticks", () => (ticksOf(t).at(-1) ?? 0) >= last + 5);
    const ticks = ticksOf(t);
    assert.deepEqual(ticks, ticks.map((_, i) => i + 1), "the counter did not go on");
    assert.equal(t.poll(), undefined, `the restored VM exited:\n${t.output()}`);
  }),
});

const erlc = findProgram("erlc");

Deno.test({
  name: "an Erlang gen_tcp server (a process per client, an ETS counter) keeps its client",
  ignore: !erl || !erlc,
  fn: withTargets(async () => {
    const work = await tempDir("cryo-erlang-tcp-");
    const built = await runCommand([
      erlc!,
      "-o",
      work,
      `${repoRoot}tests/targets/erl_echo_counter.erl`,
    ]);
    assert.equal(built.code, 0, built.stderr);
    const port = freePort();
    const t = await startTarget(erl!, [
      "-noshell",
      "-pa",
      work,
      "-s",
      "erl_echo_counter",
      "start",
      String(port),
    ]);
    await waitListening(t, port);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      assert.equal(await exchange(conn, "a\n", "\n"), "1 a\n");
      await dumpKillRestore(t, OPT_IN, OPT_IN);
      assert.equal(await exchange(conn, "b\n", "\n"), "2 b\n");
      assert.equal(await onFreshConnection(port, (fresh) => exchange(fresh, "c\n", "\n")), "3 c\n");
      assert.equal(t.poll(), undefined, `the restored VM exited:\n${t.output()}`);
    } finally {
      conn.close();
    }
  }),
});

/**
 * A temp dir holding app.py, a WSGI app (`fn`) answering "<worker pid> <its request count>"
 * for a pre-forking server.
 */
async function preforkApp(prefix: string, fn: string): Promise<string> {
  const work = await tempDir(prefix);
  await Deno.writeTextFile(
    `${work}/app.py`,
    `import os
n = 0
def ${fn}(environ, start_response):
    global n
    n += 1
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{os.getpid()} {n}\\n".encode()]
`,
  );
  return work;
}

/**
 * `get` asks the app of {@link preforkApp} on `port` once and checks that the worker that
 * answered counted one more than it last did; `counts` is each worker's last count.
 */
function workerCounts(port: number): { counts: Map<number, number>; get: () => Promise<void> } {
  const counts = new Map<number, number>();
  const get = async () => {
    const [pid, n] = (await httpGet10(port, "/")).trim().split(" ").map(Number);
    const before = counts.get(pid) ?? 0;
    assert.equal(n, before + 1, `worker ${pid} counted ${n} after ${before}`);
    counts.set(pid, n);
  };
  return { counts, get };
}

const gunicorn = need("gunicorn", "gunicorn");

Deno.test({
  name: "gunicorn pre-forking two workers: each keeps its request count after restore",
  ignore: !gunicorn,
  fn: withTargets(async () => {
    const work = await preforkApp("cryo-gunicorn-", "app");
    const port = freePort();
    const t = await startTarget(gunicorn!, [
      "-w",
      "2",
      "-b",
      `127.0.0.1:${port}`,
      "--chdir",
      work,
      "app:app",
    ]);
    await waitListening(t, port);
    await waitUntil("two workers", () => childrenOf(t.pid).length === 2);
    const { counts, get } = workerCounts(port);
    for (let i = 0; i < 6; i++) await get();
    const workers = childrenOf(t.pid).toSorted();
    const rt = await dumpKillRestore(t);
    assert.equal(rt.tree.pids.length, 3, `restored pids ${rt.tree.pids}`);
    for (let i = 0; i < 6; i++) await get();
    assert.deepEqual(childrenOf(t.pid).toSorted(), workers, "the same workers");
    assert.ok(
      [...counts.keys()].every((p) => workers.includes(p)),
      `answered by ${[...counts.keys()]}`,
    );
    assert.equal(t.poll(), undefined, `the restored gunicorn exited:\n${t.output()}`);
  }),
});

const uwsgi = need("uwsgi", "uwsgi-core uwsgi-plugin-python3");
/** uwsgi's python3 plugin (uwsgi-plugin-python3), loaded with `--plugin python3`. */
const uwsgiPython = uwsgi !== undefined && (() => {
  try {
    return Deno.statSync("/usr/lib/uwsgi/plugins/python3_plugin.so").isFile;
  } catch {
    return false;
  }
})();
if (uwsgi && !uwsgiPython) {
  console.error(
    "restore_real_programs3_test: uwsgi's python3 plugin not found (apt-get install -y uwsgi-plugin-python3); skipping",
  );
}

Deno.test({
  name: "uWSGI (master, two workers, shared stats): each worker counts on, the total too",
  ignore: !uwsgiPython,
  fn: withTargets(async () => {
    const work = await preforkApp("cryo-uwsgi-", "application");
    const port = freePort();
    const t = await startTarget(uwsgi!, [
      "--plugin",
      "python3",
      "--http-socket",
      `127.0.0.1:${port}`,
      "--master",
      "--processes",
      "2",
      "--wsgi-file",
      `${work}/app.py`,
    ]);
    await waitListening(t, port);
    await waitUntil("two workers", () => childrenOf(t.pid).length === 2);
    const { get } = workerCounts(port);
    // The request log's "req: <worker's>/<total>": the total lives in memory the master and
    // the workers share. A worker reads it when it logs, after its answer: the next request
    // waits for that line, or the other worker's increment could be logged in it.
    const logged = () => (t.output().match(/\breq: \d+\/\d+\]/g) ?? []).length;
    const getLogged = async (n: number) => {
      await get();
      await waitUntil(`${n} requests logged`, () => logged() >= n);
    };
    for (let i = 1; i <= 4; i++) await getLogged(i);
    const workers = childrenOf(t.pid).toSorted();
    const rt = await dumpKillRestore(t);
    assert.equal(rt.tree.pids.length, 3, `restored pids ${rt.tree.pids}`);
    for (let i = 5; i <= 8; i++) await getLogged(i);
    assert.deepEqual(childrenOf(t.pid).toSorted(), workers, "the same workers");
    const totals = (t.output().match(/\breq: \d+\/(\d+)\]/g) ?? []).map((m) =>
      Number(m.match(/\/(\d+)/)![1])
    );
    assert.deepEqual(totals, [1, 2, 3, 4, 5, 6, 7, 8], t.output());
    assert.equal(t.poll(), undefined, `the restored uwsgi exited:\n${t.output()}`);
  }),
});

const supervisord = need("supervisord", "supervisor");
const supervisorctl = findProgram("supervisorctl");

Deno.test({
  name: "supervisord: its child counts on, and supervisorctl status and restart work after restore",
  ignore: !supervisord || !supervisorctl,
  fn: withTargets(async () => {
    const work = await tempDir("cryo-supervisord-");
    const conf = `${work}/supervisord.conf`;
    // Its control socket is bound as ctl.sock.<pid> and renamed to ctl.sock.
    await Deno.writeTextFile(
      conf,
      `[unix_http_server]
file=${work}/ctl.sock
[supervisord]
nodaemon=true
logfile=${work}/supervisord.log
pidfile=${work}/supervisord.pid
childlogdir=${work}
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[supervisorctl]
serverurl=unix://${work}/ctl.sock
[program:counter]
command=/bin/sh -c 'i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.05; done'
stdout_logfile=${work}/counter.log
startsecs=0
`,
    );
    const t = await startTarget(supervisord!, ["-c", conf]);
    const ctl = (...args: string[]) => runCommand([supervisorctl!, "-c", conf, ...args]);
    const ticks = () => {
      try {
        return (Deno.readTextFileSync(`${work}/counter.log`).match(/^tick \d+$/gm) ?? [])
          .map((l) => Number(l.slice(5)));
      } catch {
        return [];
      }
    };
    // supervisord's children outlive a SIGKILL of it (withTargets' cleanup): killed here.
    const children: number[] = [];
    try {
      await supervisedRoundTrip(t, ctl, ticks, children);
    } finally {
      for (const pid of children) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch { /* gone */ }
      }
    }
  }),
});

/** The supervisord test's body; `children` gets each counter child's pid as it is seen. */
async function supervisedRoundTrip(
  t: Awaited<ReturnType<typeof startTarget>>,
  ctl: (...args: string[]) => ReturnType<typeof runCommand>,
  ticks: () => number[],
  children: number[],
): Promise<void> {
  await waitUntil("five ticks", () => ticks().length >= 5, 20000);
  const status = await ctl("status", "counter");
  const child = Number(status.stdout.match(/RUNNING +pid (\d+)/)?.[1]);
  assert.ok(child > 0, status.stdout);
  children.push(child);
  // supervisorctl's connection closes as it exits: wait until supervisord dropped it.
  const rt = await dumpSettled(t);
  assert.ok(rt.tree.pids.includes(child), `restored pids ${rt.tree.pids}`);
  const last = ticks().at(-1)!;
  await waitUntil("five more ticks", () => (ticks().at(-1) ?? 0) >= last + 5);
  const seq = ticks();
  assert.deepEqual(seq, seq.map((_, i) => i + 1), "the child's counter did not go on");
  const after = await ctl("status", "counter");
  assert.match(after.stdout, new RegExp(`RUNNING +pid ${child},`), after.stderr);
  const restart = await ctl("restart", "counter");
  assert.match(restart.stdout, /counter: started/, restart.stderr);
  const again = await ctl("status", "counter");
  const next = Number(again.stdout.match(/RUNNING +pid (\d+)/)?.[1]);
  if (next > 0) children.push(next);
  assert.ok(next > 0 && next !== child, again.stdout);
  assert.equal(t.poll(), undefined, `the restored supervisord exited:\n${t.output()}`);
}

/**
 * Dumps, kills and restores `t`, retrying while the dump refuses an
 * accepted socket whose peer (a client that just exited) is named in
 * SO_PEERCRED: the server closes it a moment later.
 */
async function dumpSettled(t: Target): ReturnType<typeof dumpKillRestore> {
  for (let tries = 0;; tries++) {
    try {
      return await dumpKillRestore(t);
    } catch (e) {
      if (tries >= 50 || !/SO_PEERCRED/.test(String(e))) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

const mosquitto = need("mosquitto", "mosquitto");
const mosquittoSub = findProgram("mosquitto_sub");
const mosquittoPub = findProgram("mosquitto_pub");

Deno.test({
  name: "mosquitto (MQTT broker) delivers to its subscribed client after restore",
  ignore: !mosquitto || !mosquittoSub || !mosquittoPub,
  fn: withTargets(async () => {
    const work = await tempDir("cryo-mosquitto-");
    const port = freePort();
    await Deno.writeTextFile(
      `${work}/mosquitto.conf`,
      `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\n`,
    );
    const t = await startTarget(mosquitto!, ["-c", `${work}/mosquitto.conf`]);
    await waitListening(t, port);
    const sub = await startTarget(mosquittoSub!, [
      "-h",
      "127.0.0.1",
      "-p",
      String(port),
      "-t",
      "cryo/#",
      "-v",
    ]);
    const publish = async (message: string) => {
      const r = await runCommand([
        mosquittoPub!,
        "-h",
        "127.0.0.1",
        "-p",
        String(port),
        "-t",
        "cryo/a",
        "-m",
        message,
      ]);
      assert.equal(r.code, 0, r.stderr);
    };
    // Published until the subscription is in place.
    await waitUntil("the subscriber", async () => {
      await publish("one");
      await sleep(50);
      return sub.output().includes("cryo/a one\n");
    });
    await dumpKillRestore(t, OPT_IN, OPT_IN);
    await publish("two");
    await waitUntil("the message after restore", () => sub.output().includes("cryo/a two\n"));
    assert.equal(sub.poll(), undefined, `the subscriber exited:\n${sub.output()}`);
    assert.equal(t.poll(), undefined, `the restored broker exited:\n${t.output()}`);
  }),
});

const rsyslogd = need("rsyslogd", "rsyslog");
const logger = findProgram("logger");

Deno.test({
  name: "rsyslogd receiving syslog over UDP writes the messages sent after restore",
  ignore: !rsyslogd || !logger,
  fn: withTargets(async () => {
    const work = await tempDir("cryo-rsyslog-");
    const port = freePort();
    await Deno.writeTextFile(
      `${work}/rsyslog.conf`,
      `global(workDirectory="${work}")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="${port}")
*.* action(type="omfile" file="${work}/out.log")
`,
    );
    const t = await startTarget(rsyslogd!, [
      "-n",
      "-f",
      `${work}/rsyslog.conf`,
      "-i",
      `${work}/rsyslogd.pid`,
    ]);
    const bound = `0100007F:${port.toString(16).toUpperCase().padStart(4, "0")}`;
    await waitUntil("the UDP input", () => Deno.readTextFileSync("/proc/net/udp").includes(bound));
    const log = () => {
      try {
        return Deno.readTextFileSync(`${work}/out.log`);
      } catch {
        return "";
      }
    };
    const send = async (text: string) => {
      const r = await runCommand([
        logger!,
        "-d",
        "-n",
        "127.0.0.1",
        "-P",
        String(port),
        "--rfc3164",
        "-t",
        "cryo",
        text,
      ]);
      assert.equal(r.code, 0, r.stderr);
    };
    await send("before-restore");
    await waitUntil("the first message", () => log().includes("cryo: before-restore"));
    await dumpKillRestore(t);
    await send("after-restore");
    await waitUntil("the message after restore", () => log().includes("cryo: after-restore"));
    const lines = log().trim().split("\n");
    assert.equal(lines.length, 2, log());
    assert.equal(t.poll(), undefined, `the restored rsyslogd exited:\n${t.output()}`);
  }),
});

const atd = need("atd", "at");
const atCmd = findProgram("at");

/** The pid in /run/atd.pid when that process is alive (a system atd: the test leaves it alone). */
function runningAtd(): number | undefined {
  try {
    const pid = Number(Deno.readTextFileSync("/run/atd.pid").trim());
    Deno.statSync(`/proc/${pid}`);
    return pid;
  } catch {
    return undefined;
  }
}

const systemAtd = atd ? runningAtd() : undefined;
if (systemAtd) {
  console.error(`restore_real_programs3_test: an atd runs (pid ${systemAtd}); skipping`);
}

Deno.test({
  name: "atd runs a job queued with at after restore (at signals it by the pid in its pid file)",
  ignore: !atd || !atCmd || systemAtd !== undefined,
  fn: withTargets(async () => {
    const work = await tempDir("cryo-atd-");
    const ran = (name: string) => {
      try {
        return Deno.readTextFileSync(`${work}/${name}`) === "ran\n";
      } catch {
        return false;
      }
    };
    const queue = async (name: string) => {
      const r = await runCommand(["sh", "-c", `echo 'echo ran > ${work}/${name}' | ${atCmd} now`]);
      assert.equal(r.code, 0, r.stderr);
    };
    const t = await startTarget(atd!, ["-f"]);
    try {
      await waitUntil("atd's pid file", () => runningAtd() === t.pid);
      await queue("one");
      await waitUntil("the first job", () => ran("one"));
      // The job's child has exited and been reaped before the dump.
      await waitUntil("no job running", () => childrenOf(t.pid).length === 0);
      await dumpKillRestore(t);
      await queue("two");
      await waitUntil("the job queued after restore", () => ran("two"));
      assert.equal(t.poll(), undefined, `the restored atd exited:\n${t.output()}`);
    } finally {
      // A killed atd leaves its pid file behind.
      await t.kill();
      if (runningAtd() === undefined) await Deno.remove("/run/atd.pid").catch(() => {});
    }
  }),
});

const xvfb = need("Xvfb", "xvfb");
const xprop = findProgram("xprop");
const xdpyinfo = findProgram("xdpyinfo");

Deno.test({
  name: "Xvfb keeps a root window property and serves new X clients after restore",
  ignore: !xvfb || !xprop || !xdpyinfo,
  fn: withTargets(async () => {
    let n = 100 + Math.floor(Math.random() * 800);
    const taken = (n: number) =>
      [`/tmp/.X${n}-lock`, `/tmp/.X11-unix/X${n}`].some((p) => {
        try {
          Deno.lstatSync(p);
          return true;
        } catch {
          return false;
        }
      });
    while (taken(n)) n++;
    const display = `:${n}`;
    const x = (argv: string[]) => runCommand(argv, { env: { DISPLAY: display } });
    try {
      // -noreset: the server keeps its state when its last client leaves.
      const t = await startTarget(xvfb!, [
        display,
        "-nolisten",
        "tcp",
        "-noreset",
        "-screen",
        "0",
        "320x240x24",
      ]);
      await waitUntil("the X server", async () => (await x([xdpyinfo!])).code === 0);
      const set = await x([xprop!, "-root", "-f", "CRYO", "8s", "-set", "CRYO", "before"]);
      assert.equal(set.code, 0, set.stderr);
      await dumpKillRestore(t);
      const got = await x([xprop!, "-root", "CRYO"]);
      assert.equal(got.stdout, 'CRYO(STRING) = "before"\n', got.stderr);
      const info = await x([xdpyinfo!]);
      assert.match(info.stdout, /dimensions: +320x240 pixels/);
      assert.equal(t.poll(), undefined, `the restored Xvfb exited:\n${t.output()}`);
    } finally {
      // A killed X server leaves its lock file and socket behind.
      await Deno.remove(`/tmp/.X${n}-lock`).catch(() => {});
      await Deno.remove(`/tmp/.X11-unix/X${n}`).catch(() => {});
    }
  }),
});
