/**
 * Round trips of unix sockets (engine/fds/unix.ts) with
 * tests/targets/rt_unix.c: socketpairs of every type with queued bytes and
 * datagrams, shutdown, options, path and abstract listeners with accepted
 * and pending connections, a datagram receiver with named and unnamed
 * senders, a pair whose peer closed, a pair shared with a child, a pair of
 * a process that is not root (owned by it after the restore). Then what
 * must be refused (bytes on a pending connection, a peer
 * outside the tree without --ext-unix-sk), the --ext-unix-sk round trip
 * through the library and the CLI (manifest, `show`, restore without the
 * flag refused); then real programs: `deno run` with a timer, a Worker and
 * its internal socketpairs, `python3 -c` with a socketpair, a listener and
 * a client, and a tmux server.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { restore } from "../engine/restore/mod.ts";
import { UnsupportedError } from "../engine/errors.ts";
import { readImage } from "../engine/inspect.ts";
import { dumpUnixSockets } from "../ffi/sock_diag.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { assertCliOk, assertOneLineError, runCli, runCommand } from "./helpers/commands.ts";
import { tempDir } from "./helpers/fs.ts";
import {
  assertTriggeredRoundTrip,
  dumpKillRestore,
  startTriggered,
  tempImageDir,
  type TriggeredTarget,
} from "./helpers/roundtrip.ts";
import {
  adoptPid,
  becomeSubreaper,
  buildTarget,
  startTarget,
  type Target,
  withTargets,
} from "./helpers/targets.ts";
import { deadlineIn, sleep } from "./helpers/wait.ts";

const READY = /^ready pid=(\d+)/m;

/** The checks rt_unix.c reports in its round-trip mode. */
const CHECKS = [
  "stream-bytes",
  "stream-eof",
  "stream-shut-wr",
  "stream-other-way",
  "stream-open-way",
  "dgram-1",
  "dgram-2",
  "dgram-zero-length",
  "dgram-3",
  "dgram-empty",
  "dgram-again",
  "seq-peek-off",
  "seq-1",
  "seq-2",
  "seq-nonblock",
  "opt-sndbuf",
  "opt-rcvbuf",
  "opt-passcred",
  "opt-keepalive",
  "opt-reuseaddr",
  "opt-rcvtimeo",
  "opt-sndtimeo",
  "opt-default",
  "conn-to-server",
  "conn-to-client",
  "conn-names",
  "listener-file",
  "listener-backlog-pending",
  "pending-accepted",
  "pending-talks",
  "pending-only-one",
  "listener-new",
  "abstract-pending",
  "dgram-named-sender",
  "dgram-anon-sender",
  "dgram-client",
  "orphan-names",
  "orphan-peer-name",
  "orphan-bytes",
  "orphan-talks",
  "orphan-refused",
  "relative-name",
  "relative-file",
  "relative-send",
  "creds-kept",
  "no-creds-kept",
  "creds-option-off",
  "creds-kept-while-off",
  "reset-bytes",
  "reset-error",
  "reset-eof",
  "gone-pending",
  "gone-name",
  "half-bytes",
  "half-eof",
  "child",
  "shared-pair",
];

Deno.test(
  "unix sockets: pairs, queues, shutdown, options, listeners, pending and accepted connections",
  withTargets(async () => {
    const { t, trigger, work } = await startTriggered("rt_unix", READY, { passWork: true });
    const { tree } = await dumpKillRestore(t);
    assert.equal(tree.pids.length, 2, "the child is restored too");
    // The listener as the kernel sees it: its backlog and the one connection waiting.
    const listener = [...dumpUnixSockets().values()].find((d) =>
      d.state === 10 && d.name && new TextDecoder().decode(d.name) === `${work}/listen.sock\0`
    );
    assert.deepEqual(listener?.rqlen, { rqueue: 1, wqueue: 7 }, "1 pending, backlog 7");
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, CHECKS, await t.wait());
  }),
);

Deno.test(
  "a dump that leaves the tree running changes none of its sockets (queues, errors, options)",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_unix", READY, { passWork: true });
    const dir = await tempImageDir();
    const dump = await checkpoint(t.pid, { dir, leaveRunning: true });
    assert.equal(dump.stats.processes, 2);
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, CHECKS, await t.wait());
  }),
);

/**
 * Asserts that dumping `m` fails with one line per problem matching
 * `line`, writes nothing, and leaves the target running untouched (it then
 * passes its own `check`).
 */
async function assertDumpRefused(
  m: TriggeredTarget,
  line: RegExp,
  check: string,
  optIns: string[] = [],
): Promise<void> {
  const dir = await tempImageDir();
  await assert.rejects(checkpoint(m.t.pid, { dir, optIns }), (e: unknown) => {
    assert.ok(e instanceof UnsupportedError, `expected UnsupportedError, got ${e}`);
    assert.match((e as Error).message, line);
    return true;
  });
  await assert.rejects(Deno.stat(dir), Deno.errors.NotFound, "no image is left");
  assert.equal(m.t.poll(), undefined, "the target still runs");
  await Deno.writeTextFile(m.trigger, "");
  assertChecksPassed(m.t, [check], await m.t.wait());
}

Deno.test(
  "an fd in flight (SCM_RIGHTS) in a unix socket's queue comes back with its message (more in tests/restore_scm_test.ts)",
  withTargets(async () => {
    await assertTriggeredRoundTrip("rt_unix", READY, ["scm"], ["scm-still-queued"]);
  }),
);

Deno.test(
  "bytes sent on a unix connection not accepted yet are refused by name",
  withTargets(async () => {
    const m = await startTriggered("rt_unix", READY, { passWork: true, extra: ["pending-data"] });
    await assertDumpRefused(
      m,
      /fd \d+ \(socket:\[\d+\]\): bytes sent on unix connections not accepted yet/,
      "pending-data-intact",
    );
  }),
);

Deno.test(
  "urgent (MSG_OOB) data in a unix stream socket is refused by name",
  withTargets(async () => {
    const m = await startTriggered("rt_unix", READY, { passWork: true, extra: ["oob"] });
    await assertDumpRefused(
      m,
      /fd \d+ \(socket:\[\d+\]\): unix sockets in a state cryo cannot re-create exactly: urgent \(MSG_OOB\) data/,
      "oob-still-queued",
    );
  }),
);

Deno.test(
  "a connection from outside the tree waiting on a listener of the tree is refused by name",
  withTargets(async () => {
    const m = await startTriggered("rt_unix", READY, { passWork: true, extra: ["listen"] });
    const conn = await Deno.connect({ transport: "unix", path: `${m.work}/listen.sock` });
    try {
      await conn.write(new TextEncoder().encode("waiting"));
      await assertDumpRefused(
        m,
        /fd \d+ \(socket:\[\d+\]\): unix sockets in a state cryo cannot re-create exactly: 1 connection\(s\) from outside the tree wait/,
        "outside-pending-intact",
      );
    } finally {
      conn.close();
    }
  }),
);

Deno.test(
  "restore is refused while a live socket holds the path of a listener of the image",
  withTargets(async () => {
    const m = await startTriggered("rt_unix", READY, { passWork: true, extra: ["listen"] });
    const path = `${m.work}/listen.sock`;
    const dir = await tempImageDir();
    await checkpoint(m.t.pid, { dir });
    await m.t.wait();
    await Deno.remove(path); // the stale file; someone else binds the path now
    const other = Deno.listen({ transport: "unix", path });
    try {
      await assert.rejects(
        restore(dir),
        new RegExp(`${path} \\(process \\d+ fd \\d+\\) is bound by a live socket`),
      );
    } finally {
      other.close();
    }
    const tree = await restore(dir);
    m.t.resetAfterRestore();
    assert.equal(tree.rootPid, m.t.pid);
    const conn = await Deno.connect({ transport: "unix", path });
    await conn.write(new TextEncoder().encode("waiting"));
    await Deno.writeTextFile(m.trigger, "");
    assertChecksPassed(m.t, ["outside-pending-intact"], await m.t.wait());
    conn.close();
  }),
);

Deno.test(
  "a connection whose closed peer had an address (getpeername) is refused by name",
  withTargets(async () => {
    const m = await startTriggered("rt_unix", READY, { passWork: true, extra: ["named-peer"] });
    await assertDumpRefused(
      m,
      /fd \d+ \(socket:\[\d+\]\): unix sockets in a state cryo cannot re-create exactly: its closed peer had the address .*listen\.sock/,
      "named-peer-intact",
    );
  }),
);

Deno.test(
  "unix sockets of a process that is not root come back owned by it (tests/restore_sockshare_test.ts has more)",
  withTargets(async () => {
    const work = await tempDir("cryo-unix-nonroot-");
    await Deno.chmod(work, 0o777);
    const trigger = `${work}/go`;
    const t = await startTarget("/usr/bin/setpriv", [
      "--reuid=65534",
      "--regid=65534",
      "--clear-groups",
      await buildTarget("rt_unix"),
      trigger,
      work,
      "pair",
    ]);
    await t.waitFor(READY);
    const owners = () =>
      [...Deno.readDirSync(`/proc/${t.pid}/fd`)].map((e) => `/proc/${t.pid}/fd/${e.name}`)
        .filter((p) => Deno.readLinkSync(p).startsWith("socket:"))
        .map((p) => `${Deno.statSync(p).uid}:${Deno.statSync(p).gid}`);
    assert.deepEqual(owners(), ["65534:65534", "65534:65534"]);
    await dumpKillRestore(t);
    assert.deepEqual(owners(), ["65534:65534", "65534:65534"]);
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, ["pair-intact"], await t.wait());
  }),
);

/** A unix listener of this (test) process, outside any dumped tree. */
async function outsideListener(): Promise<{ path: string; listener: Deno.UnixListener }> {
  const path = `${await tempDir("cryo-ext-unix-")}/outside.sock`;
  return { path, listener: Deno.listen({ transport: "unix", path }) };
}

/** Reads from `conn` until `n` bytes came (or the end). */
async function readN(conn: Deno.Conn, n: number): Promise<string> {
  const buf = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const r = await conn.read(buf.subarray(got));
    if (r === null) break;
    got += r;
  }
  return new TextDecoder().decode(buf.subarray(0, got));
}

/** After restore: the target reconnected to `listener`; it sends "after", gets "reply". */
async function talkAfterRestore(m: TriggeredTarget, listener: Deno.UnixListener): Promise<void> {
  const conn = await listener.accept();
  await Deno.writeTextFile(m.trigger, "");
  assert.equal(await readN(conn, 5), "after");
  await conn.write(new TextEncoder().encode("reply"));
  assertChecksPassed(m.t, ["external-send", "external-reply"], await m.t.wait());
  conn.close();
}

Deno.test(
  "--ext-unix-sk: refused without it; with it recorded in the manifest, required at restore, reconnected",
  withTargets(async () => {
    const { path, listener } = await outsideListener();
    try {
      const m = await startTriggered("rt_unix", READY, {
        passWork: true,
        extra: ["external", path],
      });
      const first = await listener.accept();
      const dir = await tempImageDir();
      await assert.rejects(checkpoint(m.t.pid, { dir }), /needs --ext-unix-sk/);
      assert.equal(m.t.poll(), undefined, "the target still runs");
      const dump = await checkpoint(m.t.pid, { dir, optIns: ["ext-unix-sk"] });
      assert.deepEqual(dump.manifest.optIns, ["ext-unix-sk"]);
      await m.t.wait();
      first.close();
      await assert.rejects(restore(dir), /the image needs --ext-unix-sk \(its dump needed it\)/);
      const tree = await restore(dir, { optIns: ["ext-unix-sk"] });
      m.t.resetAfterRestore();
      assert.equal(tree.rootPid, m.t.pid);
      await talkAfterRestore(m, listener);
    } finally {
      listener.close();
    }
  }),
);

Deno.test(
  "cli: dump and restore take --ext-unix-sk, show lists it, restore without it names it",
  withTargets(async () => {
    const { path, listener } = await outsideListener();
    try {
      const m = await startTriggered("rt_unix", READY, {
        passWork: true,
        extra: ["external", path],
      });
      const first = await listener.accept();
      const dir = await tempImageDir();
      const pid = String(m.t.pid);
      assertOneLineError(
        await runCli(["dump", pid, "--dir", dir]),
        1,
        /socket:\[\d+\]\): needs --ext-unix-sk/,
        "dump without the opt-in",
      );
      assertCliOk(await runCli(["dump", pid, "--dir", dir, "--ext-unix-sk"]), "dump");
      await m.t.wait();
      first.close();
      const show = await runCli(["show", dir]);
      assertCliOk(show, "show");
      assert.match(show.stdout, /^opt-ins: --ext-unix-sk/m);
      const plan = await runCli(["show", dir, "--plan"]);
      assertCliOk(plan, "show --plan");
      assert.match(plan.stdout, /connect\(.*# connect to .*outside\.sock/, "the reconnection");
      assertOneLineError(
        await runCli(["restore", dir, "--detach"]),
        1,
        /the image needs --ext-unix-sk \(its dump needed it\); give the same to restore/,
        "restore without the opt-in",
      );
      const r = await runCli(["restore", dir, "--detach", "--ext-unix-sk"]);
      assertCliOk(r, "restore --ext-unix-sk");
      assert.equal(r.stdout.trim(), pid);
      // The restored root was re-parented to this test process (a subreaper).
      m.t.resetAfterRestore();
      await talkAfterRestore(m, listener);
    } finally {
      listener.close();
    }
  }),
);

/** The numbers of the lines of a progress file (one number first on each line). */
async function progress(file: string): Promise<number[]> {
  const text = await Deno.readTextFile(file).catch(() => "");
  return text.split("\n").filter(Boolean).map((l) => Number(l.split(" ")[0]));
}

/** Waits until the progress file has at least `n` lines. */
async function waitProgress(t: Target, file: string, n: number, timeoutMs = 20000): Promise<void> {
  const deadline = deadlineIn(timeoutMs);
  while ((await progress(file)).length < n) {
    if (Date.now() > deadline || t.poll()) {
      throw new Error(
        `no progress in ${file}: ${await Deno.readTextFile(file).catch(() => "")}\n${t.output()}`,
      );
    }
    await sleep(50);
  }
}

/** Asserts the progress lines are 1, 2, 3, ... without a gap or a repeat. */
function assertContiguous(lines: number[]): void {
  assert.deepEqual(lines, lines.map((_, i) => i + 1), `progress: ${lines.join(" ")}`);
}

/**
 * Dumps (killing) a program writing progress lines to `file`, checks that
 * it held unix sockets and stopped, restores it and checks it goes on from
 * where it was: the lines go on 1, 2, 3, ... after those written before.
 */
async function progressRoundTrip(t: Target, file: string): Promise<void> {
  await waitProgress(t, file, 5);
  const dir = await tempImageDir();
  await checkpoint(t.pid, { dir });
  await t.wait();
  const image = await readImage(dir);
  const unix = image.processes.flatMap((p) => p.fds).filter((f) => f.socket?.unix);
  assert.ok(unix.length >= 2, "the image has its unix sockets");
  const before = await progress(file);
  assertContiguous(before);
  await sleep(200);
  assert.deepEqual(await progress(file), before, "nothing runs between dump and restore");
  const tree = await restore(dir);
  t.resetAfterRestore();
  for (const pid of tree.pids) if (pid !== t.pid) adoptPid(pid);
  assert.equal(tree.rootPid, t.pid);
  await waitProgress(t, file, before.length + 10);
  const after = await progress(file);
  assertContiguous(after);
  assert.deepEqual(after.slice(0, before.length), before);
  assert.equal(t.poll(), undefined, `the restored program runs on:\n${t.output()}`);
}

const DENO_PROGRAM = `
const file = Deno.args[0];
let n = 0;
let fromWorker = 0;
const w = new Worker(
  "data:text/javascript,let k = 0; setInterval(() => postMessage(++k), 20);",
  { type: "module" },
);
w.onmessage = (e) => { fromWorker = e.data; };
setInterval(() => {
  n++;
  Deno.writeTextFileSync(file, n + " " + fromWorker + "\\n", { append: true });
}, 50);
`;

Deno.test(
  "deno run with a timer, a Worker and its socketpairs checkpoints and goes on where it was",
  withTargets(async () => {
    const work = await tempDir("cryo-deno-prog-");
    const file = `${work}/progress`;
    await Deno.writeTextFile(`${work}/prog.js`, DENO_PROGRAM);
    // Its own DENO_DIR: files this program maps must not change before the restore.
    const t = await startTarget("/usr/bin/env", [
      `DENO_DIR=${work}/deno-dir`,
      "NO_COLOR=1",
      Deno.execPath(),
      "run",
      "--allow-write",
      "--allow-read",
      `${work}/prog.js`,
      file,
    ]);
    await progressRoundTrip(t, file);
    // The worker's count went on too (it is not restarted from 0).
    const workerCounts = (await Deno.readTextFile(file)).split("\n").filter(Boolean).map((l) =>
      Number(l.split(" ")[1])
    );
    const last = workerCounts.at(-1)!;
    assert.ok(last > workerCounts[4], `worker counts: ${workerCounts.join(" ")}`);
    for (let i = 1; i < workerCounts.length; i++) {
      assert.ok(workerCounts[i] >= workerCounts[i - 1], `worker counts: ${workerCounts.join(" ")}`);
    }
  }),
);

const PYTHON_PROGRAM = `
import socket, sys, time
out, work = sys.argv[1], sys.argv[2]
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
l = socket.socket(socket.AF_UNIX)
l.bind(work + "/py.sock")
l.listen(4)
c = socket.socket(socket.AF_UNIX)
c.connect(work + "/py.sock")
s, _ = l.accept()
n = 1
a.send(b"1")
while True:
    a.send(b"%d" % (n + 1))
    got = b.recv(64)
    c.send(got + b"\\n")
    line = s.recv(64)
    with open(out, "a") as f:
        f.write(line.decode())
    n += 1
    time.sleep(0.03)
`;

Deno.test(
  "python3 -c with a socketpair, a listener and a client checkpoints and goes on where it was",
  withTargets(async () => {
    const work = await tempDir("cryo-python-prog-");
    const file = `${work}/progress`;
    const t = await startTarget("/usr/bin/python3", ["-c", PYTHON_PROGRAM, file, work]);
    await progressRoundTrip(t, file);
  }),
);

Deno.test(
  "a tmux server (unix listener, pty, a shell counting) checkpoints; the restored server takes clients",
  withTargets(async () => {
    const work = await tempDir("cryo-tmux-");
    const sock = `${work}/tmux.sock`;
    const file = `${work}/progress`;
    becomeSubreaper(); // the server daemonizes: it comes back to this process
    const tmux = (args: string[]) =>
      runCommand(["tmux", "-f", "/dev/null", "-S", sock, ...args], {
        env: { TERM: "xterm", PATH: "/usr/bin:/bin" },
      });
    // A counter that forks nothing (a short-lived child could be caught as a zombie).
    const loop =
      `import time\nfor i in range(1, 10**9):\n  open("${file}", "a").write(f"{i}\\n"); time.sleep(0.05)`;
    const started = await tmux(["new-session", "-d", "-s", "cryo", "python3", "-c", loop]);
    assert.equal(started.code, 0, started.stderr);
    const info = await tmux(["display-message", "-p", "#{pid}"]);
    const server = adoptPid(Number(info.stdout.trim()));
    try {
      await waitProgress(server, file, 5);
      const dir = await tempImageDir();
      const dump = await checkpoint(server.pid, { dir });
      assert.ok(dump.stats.processes >= 2, "the server and the session's shell");
      await server.wait();
      const before = await progress(file);
      const tree = await restore(dir);
      server.resetAfterRestore();
      for (const pid of tree.pids) if (pid !== server.pid) adoptPid(pid);
      await waitProgress(server, file, before.length + 10);
      assertContiguous(await progress(file));
      const ls = await tmux(["list-sessions", "-F", "#{session_name} #{pid}"]);
      assert.equal(ls.code, 0, ls.stderr);
      assert.equal(ls.stdout.trim(), `cryo ${server.pid}`, "a client talks to the restored server");
    } finally {
      await tmux(["kill-server"]);
    }
  }),
);

Deno.test(
  "unix listener whose file was renamed after the bind (supervisord): bound, then renamed again",
  withTargets(async () => {
    const work = await tempDir("cryo-unix-renamed-");
    const t = await startTarget("rt_unix_renamed", [work]);
    await t.waitFor(READY);
    const { dir } = await dumpKillRestore(t);
    const image = await readImage(dir);
    const file = image.processes.flatMap((p) => p.fds).find((f) => f.socket?.unix?.listen)
      ?.socket?.unix?.file;
    assert.equal(file?.renamed, `${work}/ctl.sock`);
    t.signal(10 /* SIGUSR1 */);
    const st = await t.wait();
    assert.equal(st.kind, "exited", t.output());
    assert.match(t.output(), /^PASS$/m, t.output());
  }),
);

Deno.test(
  "a listener made by a parent that forked the daemon and exited keeps the parent's pid in its peer credentials",
  withTargets(async () => {
    const ready = /^ready pid=(\d+) child=(\d+)$/m;
    const rt = await startTriggered("rt_unix_listen_parent", ready, {
      passWork: true,
      extra: ["exit"],
    });
    await rt.t.wait(); // the parent exits (reaped: its pid is free again)
    const daemon = adoptPid(Number(rt.ready[2]), rt.t.outputPath);
    await dumpKillRestore(daemon);
    await Deno.writeTextFile(rt.trigger, "");
    assertChecksPassed(daemon, ["listener-cred", "client-cred", "accepted"], await daemon.wait());

    // A parent still alive outside the tree: its pid cannot be taken at restore.
    const stay = await startTriggered("rt_unix_listen_parent", ready, {
      passWork: true,
      extra: ["stay"],
    });
    const child = Number(stay.ready[2]);
    adoptPid(child);
    const dir = await tempImageDir();
    await assert.rejects(() => checkpoint(child, { dir }), (e: Error) => {
      assert.ok(e instanceof UnsupportedError, String(e));
      assert.match(
        e.message,
        new RegExp(`SO_PEERCRED\\) name process ${stay.t.pid}, but process ${child} would`),
      );
      return true;
    });
  }),
);
