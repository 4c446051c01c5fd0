/**
 * More real programs across dump, kill and restore, each checked from
 * outside (skipped, with a message, when not installed):
 *
 * - socat relaying a TCP client to a TCP server (two established
 *   connections in one process), both ends in this test;
 * - openssh's ssh-agent holding a key in memory: `ssh-add -l` lists it
 *   after the restore, through the agent's unix listener;
 * - busybox httpd: serves a new client after the restore;
 * - python3 asyncio with a subprocess on pipes and a timer: a tree whose
 *   echo counter goes on;
 * - a Deno WebSocket server (Deno.upgradeWebSocket: tokio, V8 threads) with
 *   a connected client: the same socket echoes with the server's counter.
 */

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
  waitListening,
} from "./helpers/servers.ts";
import { runCommand } from "./helpers/commands.ts";
import { waitUntil } from "./helpers/wait.ts";

const OPT_IN = { optIns: ["tcp-established"] };

/** The path of program `name` (a line on stderr when the tests needing it skip). */
const need = (name: string, pkg: string) => needProgram("restore_more_programs_test", name, pkg);

const enc = new TextEncoder();

const socat = need("socat", "socat");

Deno.test({
  name: "socat relays the same client to the same server after restore (two connections)",
  ignore: !socat,
  fn: withTargets(async () => {
    // The upstream: an echo server in this test that prefixes "up:".
    const upstream = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const upPort = (upstream.addr as Deno.NetAddr).port;
    const served = (async () => {
      const c = await upstream.accept();
      const buf = new Uint8Array(4096);
      try {
        for (;;) {
          const n = await c.read(buf);
          if (n === null) break;
          await c.write(enc.encode("up:" + new TextDecoder().decode(buf.subarray(0, n))));
        }
      } catch { /* closed */ }
      c.close();
    })();
    const port = freePort();
    const t = await startTarget(socat!, [
      `TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr`,
      `TCP:127.0.0.1:${upPort}`,
    ]);
    await waitListening(t, port);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      assert.equal(await exchange(conn, "one\n", "\n"), "up:one\n");
      await dumpKillRestore(t, OPT_IN, OPT_IN);
      assert.equal(await exchange(conn, "two\n", "\n"), "up:two\n");
      assert.equal(t.poll(), undefined, `the restored socat exited:\n${t.output()}`);
    } finally {
      conn.close();
      upstream.close();
    }
    await served;
  }),
});

const sshAgent = need("ssh-agent", "openssh-client");
const sshAdd = findProgram("ssh-add");
const sshKeygen = findProgram("ssh-keygen");

Deno.test({
  name: "ssh-agent still holds its key after restore (ssh-add -l through its socket)",
  ignore: !sshAgent || !sshAdd || !sshKeygen,
  fn: withTargets(async () => {
    const work = await tempDir("cryo-ssh-agent-");
    const sock = `${work}/agent.sock`;
    const key = `${work}/id_ed25519`;
    const gen = await runCommand([
      sshKeygen!,
      "-q",
      "-t",
      "ed25519",
      "-N",
      "",
      "-C",
      "cryo",
      "-f",
      key,
    ]);
    assert.equal(gen.code, 0, gen.stderr);
    await Deno.remove(key + ".pub");
    const t = await startTarget(sshAgent!, ["-D", "-a", sock]);
    await waitUntil("the agent's socket", () => {
      try {
        return Deno.statSync(sock).isSocket === true;
      } catch {
        return false;
      }
    });
    const env = { SSH_AUTH_SOCK: sock };
    const add = await runCommand([sshAdd!, key], { env });
    assert.equal(add.code, 0, add.stderr);
    await Deno.remove(key); // only the agent's memory has it now
    const before = await runCommand([sshAdd!, "-l"], { env });
    assert.equal(before.code, 0, before.stderr);
    assert.match(before.stdout, /cryo \(ED25519\)/);
    // ssh-add's connection closes as it exits: wait until the agent dropped it.
    await dumpSettled(t);
    const after = await runCommand([sshAdd!, "-l"], { env });
    assert.equal(after.code, 0, `ssh-add -l after restore: ${after.stderr}`);
    assert.equal(after.stdout, before.stdout);
    assert.equal(t.poll(), undefined, `the restored agent exited:\n${t.output()}`);
  }),
});

/**
 * Dumps, kills and restores `t`, retrying while the dump refuses an
 * accepted socket whose peer (a client that just exited) is named in
 * SO_PEERCRED: the server closes it a moment later.
 */
async function dumpSettled(t: Target): Promise<void> {
  for (let tries = 0;; tries++) {
    try {
      await dumpKillRestore(t);
      return;
    } catch (e) {
      if (tries >= 50 || !/SO_PEERCRED/.test(String(e))) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

const busybox = need("busybox", "busybox");

/** One GET on a fresh connection (HTTP/1.0, closed by the server); returns the reply. */
async function httpGet10(port: number, path: string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(enc.encode(`GET ${path} HTTP/1.0\r\n\r\n`));
    const chunks: string[] = [];
    const buf = new Uint8Array(4096);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      chunks.push(new TextDecoder().decode(buf.subarray(0, n)));
    }
    return chunks.join("");
  } finally {
    conn.close();
  }
}

Deno.test({
  name: "busybox httpd serves a new client after restore",
  ignore: !busybox,
  fn: withTargets(async () => {
    const work = await tempDir("cryo-busybox-httpd-");
    await Deno.writeTextFile(`${work}/a.txt`, "file a\n");
    const port = freePort();
    const t = await startTarget(busybox!, ["httpd", "-f", "-p", `127.0.0.1:${port}`, "-h", work]);
    await waitListening(t, port);
    assert.match(await httpGet10(port, "/a.txt"), /^HTTP\/1\.[01] 200[^]*\r\n\r\nfile a\n$/);
    await dumpKillRestore(t);
    assert.match(await httpGet10(port, "/a.txt"), /^HTTP\/1\.[01] 200[^]*\r\n\r\nfile a\n$/);
    assert.equal(t.poll(), undefined, `the restored httpd exited:\n${t.output()}`);
  }),
});

const python3 = need("python3", "python3");

/** The numbered echo lines "n <i>" a program printed (a partial last line ignored). */
function echoLines(t: Target): number[] {
  const out = t.output();
  const complete = out.slice(0, out.lastIndexOf("\n") + 1);
  return complete.split("\n").filter((l) => l !== "").map((l) => {
    const m = l.match(/^echo (\d+)$/);
    assert.ok(m, `unexpected line ${JSON.stringify(l)} in:\n${out}`);
    return Number(m[1]);
  });
}

Deno.test({
  name: "python3 asyncio with a subprocess pipe and a timer goes on after restore",
  ignore: !python3,
  fn: withTargets(async () => {
    const script = `
import asyncio
async def main():
    p = await asyncio.create_subprocess_exec("cat", stdin=asyncio.subprocess.PIPE,
                                             stdout=asyncio.subprocess.PIPE)
    i = 0
    while True:
        i += 1
        p.stdin.write(f"echo {i}\\n".encode())
        await p.stdin.drain()
        line = await p.stdout.readline()
        print(line.decode(), end="", flush=True)
        await asyncio.sleep(0.05)
asyncio.run(main())
`;
    const t = await startTarget(python3!, ["-c", script]);
    await waitUntil("five echoes", () => echoLines(t).length >= 5);
    const rt = await dumpKillRestore(t);
    assert.equal(rt.tree.pids.length, 2, `restored pids ${rt.tree.pids}`);
    const last = echoLines(t).at(-1)!;
    await waitUntil("five more echoes", () => (echoLines(t).at(-1) ?? 0) >= last + 5);
    const lines = echoLines(t);
    assert.deepEqual(lines, lines.map((_, i) => i + 1), "the echo counter did not go on");
    assert.equal(t.poll(), undefined, `the restored python exited:\n${t.output()}`);
  }),
});

const deno = Deno.execPath();

Deno.test({
  name: "a Deno WebSocket server keeps its connected client and its counter after restore",
  fn: withTargets(async () => {
    const work = await tempDir("cryo-deno-ws-");
    const port = freePort();
    await Deno.writeTextFile(
      `${work}/server.ts`,
      `let n = 0;
Deno.serve({ hostname: "127.0.0.1", port: ${port}, onListen() {} }, (req) => {
  const { socket, response } = Deno.upgradeWebSocket(req);
  socket.onmessage = (e) => socket.send(\`\${++n}:\${e.data}\`);
  return response;
});
`,
    );
    const t = await startTarget(deno, ["run", "--allow-net", "--no-config", `${work}/server.ts`], {
      cwd: work,
    });
    await waitListening(t, port);
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
    const got: string[] = [];
    ws.onmessage = (e) => got.push(String(e.data));
    await new Promise<void>((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = (e) => reject(new Error(`websocket: ${(e as ErrorEvent).message}`));
    });
    try {
      ws.send("a");
      ws.send("b");
      await waitUntil("two replies", () => got.length >= 2);
      await dumpKillRestore(t, OPT_IN, OPT_IN);
      ws.send("c");
      await waitUntil("the reply after restore", () => got.length >= 3);
      assert.deepEqual(got, ["1:a", "2:b", "3:c"]);
      assert.equal(t.poll(), undefined, `the restored deno exited:\n${t.output()}`);
    } finally {
      const closed = new Promise((r) => ws.onclose = r);
      ws.close();
      await Promise.race([closed, new Promise((r) => setTimeout(r, 2000))]);
    }
  }),
});

const rustc = findProgram("rustc", `${Deno.env.get("HOME") ?? "/root"}/.cargo/bin/rustc`);
if (!rustc) console.error("restore_more_programs_test: rustc not found; skipping the Rust test");

Deno.test({
  name: "a static Rust binary (std threads, a TCP echo server) keeps its client and counts",
  ignore: !rustc,
  fn: withTargets(async () => {
    const work = await tempDir("cryo-rust-");
    const bin = `${work}/rust_echo_counter`;
    const src = new URL("./targets/rust_echo_counter.rs", import.meta.url).pathname;
    const built = await runCommand([
      rustc!,
      "-O",
      "-C",
      "target-feature=+crt-static",
      "-o",
      bin,
      src,
    ]);
    assert.equal(built.code, 0, built.stderr);
    assert.match((await runCommand(["file", bin])).stdout, /statically linked|static-pie/);
    const port = freePort();
    const t = await startTarget(bin, [String(port)]);
    await t.waitFor(/ready (\d+)/);
    await waitListening(t, port);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      assert.equal(await exchange(conn, "a\n", "\n"), "1 true a\n");
      assert.equal(await exchange(conn, "b\n", "\n"), "2 true b\n");
      await dumpKillRestore(t, OPT_IN, OPT_IN);
      assert.equal(await exchange(conn, "c\n", "\n"), "3 true c\n");
      assert.equal(
        await onFreshConnection(port, (fresh) => exchange(fresh, "d\n", "\n")),
        "4 true d\n",
      );
      assert.equal(t.poll(), undefined, `the restored program exited:\n${t.output()}`);
    } finally {
      conn.close();
    }
  }),
});

const rsync = need("rsync", "rsync");

Deno.test({
  name: "rsync --daemon mid-transfer: the client's download completes intact after restore",
  ignore: !rsync,
  fn: withTargets(async () => {
    const work = await tempDir("cryo-rsync-");
    await Deno.mkdir(`${work}/src`);
    await Deno.mkdir(`${work}/dst`);
    const data = new Uint8Array(1 << 20);
    for (let i = 0; i < data.length; i += 65536) {
      crypto.getRandomValues(data.subarray(i, i + 65536));
    }
    await Deno.writeFile(`${work}/src/big`, data);
    const port = freePort();
    await Deno.writeTextFile(
      `${work}/rsyncd.conf`,
      `use chroot = no
log file = ${work}/rsyncd.log
[m]
  path = ${work}/src
  read only = yes
`,
    );
    const daemon = await startTarget(rsync!, [
      "--daemon",
      "--no-detach",
      `--config=${work}/rsyncd.conf`,
      "--address=127.0.0.1",
      `--port=${port}`,
    ]);
    await waitListening(daemon, port);
    const client = await startTarget(rsync!, [
      "--bwlimit=256",
      `rsync://127.0.0.1:${port}/m/big`,
      `${work}/dst/`,
    ]);
    // Mid-transfer: the daemon has forked the connection's process and the
    // client has written part of the file.
    const children = () =>
      Deno.readTextFileSync(`/proc/${daemon.pid}/task/${daemon.pid}/children`).trim();
    const partial = () => {
      for (const e of Deno.readDirSync(`${work}/dst`)) {
        if (Deno.statSync(`${work}/dst/${e.name}`).size > 64 * 1024) return true;
      }
      return false;
    };
    await waitUntil("the transfer under way", () => children() !== "" && partial());
    const rt = await dumpKillRestore(daemon, OPT_IN, OPT_IN);
    assert.equal(rt.tree.pids.length, 2, `restored pids ${rt.tree.pids}`);
    const status = await client.wait(30000);
    assert.deepEqual(
      status,
      { kind: "exited", pid: client.pid, code: 0 },
      `the client failed:\n${client.output()}`,
    );
    assert.deepEqual(await Deno.readFile(`${work}/dst/big`), data, "the downloaded file differs");
    assert.equal(daemon.poll(), undefined, `the restored daemon exited:\n${daemon.output()}`);
  }),
});

Deno.test({
  name: "a Deno program with a Worker and a piped subprocess goes on, and sees the child exit",
  fn: withTargets(async () => {
    const work = await tempDir("cryo-deno-child-");
    await Deno.writeTextFile(
      `${work}/main.ts`,
      `const src = "let n = 0; self.onmessage = (e) => { n += e.data; self.postMessage(n); };";
const w = new Worker(URL.createObjectURL(new Blob([src], { type: "text/javascript" })), { type: "module" });
const p = new Deno.Command("cat", { stdin: "piped", stdout: "piped" }).spawn();
const out = p.stdin.getWriter();
const lines = p.stdout.pipeThrough(new TextDecoderStream()).getReader();
p.status.then((s) => { console.log("child", s.signal); Deno.exit(0); });
w.onmessage = async (e) => {
  await out.write(new TextEncoder().encode(\`echo \${e.data}\\n\`));
  console.log((await lines.read()).value.trim());
};
setInterval(() => w.postMessage(1), 50);
`,
    );
    const t = await startTarget(deno, ["run", "-A", "--no-config", `${work}/main.ts`], {
      cwd: work,
    });
    const echoes = () => (t.output().match(/^echo (\d+)$/gm) ?? []).map((l) => Number(l.slice(5)));
    await waitUntil("five echoes", () => echoes().length >= 5, 20000);
    const rt = await dumpKillRestore(t);
    assert.equal(rt.tree.pids.length, 2, `restored pids ${rt.tree.pids}`);
    const last = echoes().at(-1)!;
    await waitUntil("five more echoes", () => (echoes().at(-1) ?? 0) >= last + 5);
    const lines = echoes();
    assert.deepEqual(lines, lines.map((_, i) => i + 1), "the worker's sum did not go on");
    const child = rt.tree.pids.find((p) => p !== t.pid)!;
    Deno.kill(child, "SIGTERM");
    const status = await t.wait();
    assert.deepEqual(status, { kind: "exited", pid: t.pid, code: 0 }, t.output());
    assert.match(t.output(), /^child SIGTERM$/m);
  }),
});
