/**
 * Live migration on one host (engine/migrate/, cli/migrate.ts,
 * cli/receive.ts): `cryo receive` runs as a CLI subprocess on an
 * ephemeral loopback port, `cryo migrate` sends tests/targets/rt_precopy.c
 * (which keeps rewriting its memory) to it:
 *
 * - the migration succeeds after pre-copy rounds; the source is killed;
 *   the receiver restores the tree with the same pid, which then checks
 *   its whole memory against its write counters (PASS); no partial
 *   directory is left; the same with `receive --lazy`, which restores from
 *   the chain as received and merges it into one image while the tree
 *   runs (pages merged after the restore > 0; the image in --dir complete,
 *   checksums recorded and matching);
 * - the test (the source's parent) reaping the killed source only 1.5 s after
 *   it became a zombie: the receiver waits for the pid (bounded) and restores;
 * - `receive --lazy` SIGKILLed while it serves (CRYO_TEST_PAUSE_AT=lazy-serve):
 *   the restored tree is killed (never runs with a missing page), the
 *   received chain is kept (marked: the next reception does not remove
 *   it), and `cryo restore` of its last round restores the tree, exact;
 * - the same over a veth pair between two fresh network namespaces
 *   (tests/helpers/netns.ts): the source and `cryo migrate` in one, `cryo
 *   receive` listening on its veth address in the other, where the tree
 *   comes back (skipped, with the reason printed, where namespaces cannot
 *   be made: not root, no iproute2);
 * - a sender with the wrong key is refused by the receiver (one line on
 *   each side), nothing is written (no image, no partial directory), and
 *   the source runs on untouched and checks itself;
 * - the receiver interrupted (SIGINT) during the rounds: one line on each
 *   side, nothing kept, the source runs on without the tracking (same fds,
 *   no userfaultfd registration) and checks itself;
 * - the receiver SIGKILLed during a round: the sender fails with one line,
 *   the source runs on untracked; the partial directory the killed
 *   receiver left is removed by the next reception into the same --dir;
 * - the sender (the `cryo migrate` CLI) SIGKILLed during the first round,
 *   with the tree frozen by a later round (CRYO_TEST_PAUSE_AT=frozen:2),
 *   and with the source stopped after the final dump (migrate-stopped):
 *   each time the receiver fails with one line and keeps nothing, and the
 *   guard (engine/migrate/guard.ts) leaves the source running, continued,
 *   with the fds and userfaultfd state it had before; it checks itself.
 */

import assert from "node:assert/strict";
import { removeStaleWorkDirs } from "../engine/migrate/work_dir.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { assertOneLineError, cliCommand, runCli } from "./helpers/commands.ts";
import { tempDir } from "./helpers/fs.ts";
import { verifyImageDir } from "../engine/image/manifest.ts";
import { statusField } from "./helpers/proc.ts";
import { sleep, waitUntil } from "./helpers/wait.ts";
import { netnsUnavailable, withNetnsPair } from "./helpers/netns.ts";
import { startTriggered } from "./helpers/roundtrip.ts";
import { buildTarget, startTarget, withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+) region=0x([0-9a-f]+) pages=(\d+)$/m;
const CHECKS = ["pages", "writes", "rewrite"];

/** A receiver CLI subprocess, with its stderr collected as it comes. */
class Receiver {
  readonly child: Deno.ChildProcess;
  stderr = "";
  readonly #drained: Promise<void>;
  readonly stdout: Promise<string>;

  constructor(args: string[], wrapper: string[] = []) {
    const child = cliCommand(["receive", ...args], "piped", wrapper).spawn();
    this.child = child;
    const dec = new TextDecoder();
    this.#drained = (async () => {
      for await (const chunk of child.stderr) this.stderr += dec.decode(chunk);
    })();
    this.stdout = new Response(child.stdout).text();
  }

  /** The port from its "listening on" line (on loopback unless `on` is given). */
  async port(on = /127\.0\.0\.1:(\d+) \(loopback only/): Promise<number> {
    const deadline = Date.now() + 60000;
    const line = new RegExp(`listening on ${on.source}`);
    for (;;) {
      const m = line.exec(this.stderr);
      if (m) return Number(m[1]);
      if (Date.now() > deadline) throw new Error(`receiver not listening: ${this.stderr}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Waits for it to exit: code, stdout and stderr. */
  async done(): Promise<{ code: number; stdout: string; stderr: string }> {
    const st = await this.child.status;
    await this.#drained;
    return { code: st.code, stdout: await this.stdout, stderr: this.stderr };
  }

  /** Kills it if it still runs. */
  stop(): void {
    try {
      this.child.kill("SIGKILL");
    } catch { /* exited */ }
  }
}

async function keyFile(dir: string, name: string, text: string): Promise<string> {
  const path = `${dir}/${name}`;
  await Deno.writeTextFile(path, text, { mode: 0o600 });
  await Deno.chmod(path, 0o600);
  return path;
}

/**
 * Like startTriggered, the target run under `wrapper` (which must exec
 * it: nsenter entering only a network namespace does).
 */
async function startWrapped(wrapper: string[], name: string, ready: RegExp, extra: string[]) {
  const work = await tempDir(`cryo-${name.replaceAll("_", "-")}-`);
  const trigger = `${work}/go`;
  const t = await startTarget(wrapper[0], [
    ...wrapper.slice(1),
    await buildTarget(name),
    trigger,
    ...extra,
  ]);
  const m = await t.waitFor(ready);
  assert.equal(Number(m[1]), t.pid, "the pid in the ready line");
  return { t, trigger };
}

/** Where the receiver listens and how each side is run (default: loopback, this namespace). */
interface Path {
  /** The receiver's address. */
  addr: string;
  /** Its "listening on" text, the port as group 1. */
  listening: RegExp;
  /** Command prefixes running the receiver and the sender (and the source, which must share its namespaces). */
  rxWrapper: string[];
  /** The receiver's network namespace (/run/netns/<name>), where the tree must come back. */
  rxNetns?: string;
  /** The sender's prefix; the source runs under it too (cryo dumps only in its own namespaces). */
  txWrapper: string[];
}

const LOOPBACK: Path = {
  addr: "127.0.0.1",
  listening: /127\.0\.0\.1:(\d+) \(loopback only/,
  rxWrapper: [],
  txWrapper: [],
};

/**
 * Migrates rt_precopy to a receiver started with `rxArgs` more, and checks the restored tree.
 * With `reapLateMs`, the test (the source's parent) reaps the killed source only that long
 * after it became a zombie, as a busy parent would: the receiver must wait for its pid.
 */
async function migrateAndCheck(
  rxArgs: string[],
  path: Path = LOOPBACK,
  reapLateMs?: number,
): Promise<void> {
  const { t, trigger } = path.txWrapper.length
    ? await startWrapped(path.txWrapper, "rt_precopy", READY, ["16"])
    : await startTriggered("rt_precopy", READY, { extra: ["16"] });
  const work = await tempDir("cryo-migrate-test-");
  const key = await keyFile(work, "key", "a shared secret of enough bytes\n");
  const dir = `${work}/in`;
  const listen = path === LOOPBACK ? "0" : `${path.addr}:0`;
  const rx = new Receiver(
    ["--listen", listen, "--dir", dir, "--key-file", key, ...rxArgs],
    path.rxWrapper,
  );
  try {
    const port = await rx.port(path.listening);
    // The sender kills the source; the test reaps it (or later, see reapLateMs).
    const reaped = reapLateMs === undefined ? t.wait(120000) : undefined;
    const tx = await runCli([
      "migrate",
      String(t.pid),
      "--to",
      `${path.addr}:${port}`,
      "--key-file",
      key,
      "--rounds",
      "2",
    ], { wrapper: path.txWrapper });
    assert.equal(tx.code, 0, `migrate: ${tx.stderr}`);
    assert.match(tx.stdout, new RegExp(`^migrated the tree of ${t.pid} in \\d+ rounds`));
    assert.match(tx.stderr, /round 0: .*\n(.*\n)*.*\(final\)/);
    assert.match(tx.stderr, /^cryo: round 1: /m, "a second pre-copy round");
    if (reapLateMs !== undefined) {
      await waitUntil("the source a zombie", () => statusField(t.pid, "State")[0] === "Z", 90000);
      await sleep(reapLateMs); // the parent's lateness itself (the receiver restores meanwhile)
    }
    const killed = await (reaped ?? t.wait(120000));
    assert.equal(killed.kind, "signaled", "the source is killed");
    const r = await rx.done();
    assert.equal(r.code, 0, `receive: ${r.stderr}`);
    assert.equal(r.stdout, `${t.pid}\n`, "the restored root pid");
    const peer = path === LOOPBACK ? "127.0.0.1" : path.addr.replace(/\.2$/, ".1");
    assert.match(r.stderr, new RegExp(`sender ${peer.replaceAll(".", "\\.")}:\\d+ authenticated`));
    assert.deepEqual(
      [...Deno.readDirSync(work)].map((e) => e.name).sort(),
      ["in", "key"],
      "no partial directory left",
    );
    if (rxArgs.includes("--lazy")) {
      // Restored from the chain as received; the merge into one image went on while it ran.
      const m = /restored before the image was merged; (\S+ \S+) merged while it ran/
        .exec(r.stderr);
      assert.ok(m && !m[1].startsWith("0 "), `pages merged after the restore: ${r.stderr}`);
      const { manifest } = await verifyImageDir(dir); // complete: sizes and checksums match
      assert.ok(manifest.processes.every((p) => p.checksum !== ""), "checksums recorded");
      assert.equal(manifest.parent, undefined, "one self-contained image");
    }
    if (path.rxNetns) {
      assert.equal(
        Deno.readLinkSync(`/proc/${t.pid}/ns/net`),
        `net:[${Deno.statSync(path.rxNetns).ino}]`,
        "restored in the receiver's network namespace",
      );
    }
    t.resetAfterRestore();
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, CHECKS, await t.wait(60000), { what: "restored by the receiver" });
  } finally {
    rx.stop();
  }
}

Deno.test(
  "migrate to a receiver on loopback: pre-copy rounds, the source killed, restored there with its memory exact",
  withTargets(() => migrateAndCheck([])),
);

Deno.test(
  "migrate on one host, the source's zombie reaped late by its parent: the receiver waits for its pid",
  withTargets(() => migrateAndCheck([], LOOPBACK, 1500)),
);

Deno.test(
  "migrate to a receiver that restores lazily: memory exact",
  withTargets(() => migrateAndCheck(["--lazy"])),
);

const noNetns = await netnsUnavailable();
if (noNetns) console.error(`migrate_test: the network-namespace test is skipped: ${noNetns}`);

Deno.test({
  name:
    "migrate over a veth between two network namespaces: the receiver restores what the sender killed",
  ignore: !!noNetns,
  fn: withTargets(() =>
    withNetnsPair((a, b) =>
      migrateAndCheck([], {
        addr: b.addr,
        listening: new RegExp(`${b.addr.replaceAll(".", "\\.")}:(\\d+)\\n`),
        rxWrapper: b.enter,
        rxNetns: `/run/netns/${b.name}`,
        txWrapper: a.enter,
      })
    )
  ),
});

Deno.test(
  "migrate with the wrong key: refused by the receiver, nothing written, the source runs on",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_precopy", READY, { extra: ["4"] });
    const work = await tempDir("cryo-migrate-test-");
    const good = await keyFile(work, "good", "the receiver's secret 0123456789\n");
    const bad = await keyFile(work, "bad", "another secret, not the same one\n");
    const dir = `${work}/in`;
    const rx = new Receiver(["--listen", "127.0.0.1:0", "--dir", dir, "--key-file", good]);
    try {
      const port = await rx.port();
      const tx = await runCli([
        "migrate",
        String(t.pid),
        "--to",
        `127.0.0.1:${port}`,
        "--key-file",
        bad,
      ]);
      assertOneLineError(tx, 1, /receiver refused the key/, "migrate with a wrong key");
      const r = await rx.done();
      assert.equal(r.code, 1);
      assert.match(
        r.stderr,
        /^cryo: a sender failed authentication \(wrong key\): nothing was written$/m,
      );
      assert.equal(r.stdout, "");
      assert.deepEqual(
        [...Deno.readDirSync(work)].map((e) => e.name).sort(),
        ["bad", "good"],
        "nothing written",
      );
      assert.equal(t.poll(), undefined, "the source runs on");
      await Deno.writeTextFile(trigger, "");
      assertChecksPassed(t, CHECKS, await t.wait(60000), { what: "the untouched source" });
    } finally {
      rx.stop();
    }
  }),
);

Deno.test(
  "migrate of a root holding a pipe leading out of the tree above fd 2: refused before the switch, the source runs on",
  withTargets(async () => {
    const work = await tempDir("cryo-migrate-test-");
    const outer = await startTarget("rt_outpipe", [`${work}/go`, "root"]);
    const root = Number((await outer.waitFor(/^ready outer=\d+ root=(\d+)$/m))[1]);
    const key = await keyFile(work, "key", "the receiver's secret 0123456789\n");
    const rx = new Receiver(["--listen", "127.0.0.1:0", "--dir", `${work}/in`, "--key-file", key]);
    try {
      const port = await rx.port();
      const tx = await runCli([
        "migrate",
        String(root),
        "--to",
        `127.0.0.1:${port}`,
        "--key-file",
        key,
      ]);
      assertOneLineError(
        tx,
        1,
        /fd 3 of \d+ is a pipe or terminal leading out of the tree: .*--inherit-fd.*the source runs on/,
        "migrate with an outside pipe",
      );
      // Running or sleeping again (a ptrace stop the detach ends may still show for a moment).
      await waitUntil(
        `process ${root} running again (State ${statusField(root, "State")})`,
        () => ["S", "R"].includes(statusField(root, "State")?.[0] ?? ""),
        3000,
      );
      assert.equal(statusField(root, "TracerPid"), "0", "let go");
    } finally {
      rx.stop();
      try {
        Deno.kill(root, "SIGKILL");
      } catch { /* gone */ }
    }
  }),
);

/** The fds of `pid` and whether any mapping is registered with a userfaultfd. */
function traces(pid: number): { fds: string[]; uffd: boolean } {
  const fds = [...Deno.readDirSync(`/proc/${pid}/fd`)].map((e) =>
    `${e.name} ${Deno.readLinkSync(`/proc/${pid}/fd/${e.name}`)}`
  ).sort();
  const uffd = Deno.readTextFileSync(`/proc/${pid}/smaps`).split("\n")
    .some((l) => l.startsWith("VmFlags:") && /\b(uw|um|ui)\b/.test(l));
  return { fds, uffd };
}

/**
 * A 32 MiB rt_precopy source with its fds and tracking state recorded, a
 * key, and a receiver on loopback writing `<work>/in`: the interruption tests.
 */
async function interruptibleSetup() {
  const { t, trigger } = await startTriggered("rt_precopy", READY, { extra: ["32"] });
  const before = traces(t.pid);
  const work = await tempDir("cryo-migrate-test-");
  const key = await keyFile(work, "key", "a shared secret of enough bytes\n");
  const rx = new Receiver(["--listen", "0", "--dir", `${work}/in`, "--key-file", key]);
  return { t, trigger, before, work, key, rx };
}

Deno.test(
  "the receiver interrupted during the rounds: one line each, nothing kept, the source runs on untracked",
  withTargets(async () => {
    const { t, trigger, before, work, key, rx } = await interruptibleSetup();
    try {
      const port = await rx.port();
      const tx = runCli([
        "migrate",
        String(t.pid),
        "--to",
        `127.0.0.1:${port}`,
        "--key-file",
        key,
        "--rounds",
        "5",
      ]);
      const deadline = Date.now() + 60000;
      while (!/authenticated/.test(rx.stderr) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 5));
      }
      rx.child.kill("SIGINT");
      const r = await rx.done();
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /^cryo: reception interrupted: nothing was kept$/m);
      assertOneLineError(await tx, 1, /the source runs on/, "migrate to an interrupted receiver");
      assert.deepEqual([...Deno.readDirSync(work)].map((e) => e.name), ["key"], "nothing kept");
      assert.equal(t.poll(), undefined, "the source runs on");
      assert.deepEqual(traces(t.pid), before, "no tracking left in the source");
      await Deno.writeTextFile(trigger, "");
      assertChecksPassed(t, CHECKS, await t.wait(60000), { what: "the source after the failure" });
    } finally {
      rx.stop();
    }
  }),
);

/** Waits until `pid` shows the fds and userfaultfd state `want` (the guard works after the sender died). */
async function waitUntraced(pid: number, want: { fds: string[]; uffd: boolean }): Promise<void> {
  const deadline = Date.now() + 90000;
  for (;;) {
    const now = traces(pid);
    if (JSON.stringify(now) === JSON.stringify(want)) return;
    if (Date.now() > deadline) assert.deepEqual(now, want, "no tracking left in the source");
    await new Promise((r) => setTimeout(r, 100));
  }
}

Deno.test(
  "the sender SIGKILLed during the rounds: the receiver fails cleanly, nothing kept, the source runs on untracked",
  withTargets(async () => {
    // Killed while the first round is armed and copied (a time), with the tree frozen by a
    // later round (the tracking armed), and with the source stopped after the final dump.
    const points: { when?: RegExp; pauseAt?: string }[] = [
      { when: /authenticated/ },
      { pauseAt: "frozen:2" },
      { pauseAt: "migrate-stopped" },
    ];
    for (const { when, pauseAt } of points) {
      const { t, trigger, before, work, key, rx } = await interruptibleSetup();
      let tx: Deno.ChildProcess | undefined;
      let tmp: string | undefined;
      try {
        const port = await rx.port();
        const args = ["migrate", String(t.pid), "--to", `127.0.0.1:${port}`, "--key-file", key];
        // The sender's work directory goes to a temporary directory of the test's own.
        tmp = Deno.makeTempDirSync({ prefix: "cryo-migrate-test-tmp-" });
        const wrapper = [
          "env",
          `TMPDIR=${tmp}`,
          ...(pauseAt ? [`CRYO_TEST_PAUSE_AT=${pauseAt}`] : []),
        ];
        tx = cliCommand([...args, "--rounds", "8"], "piped", wrapper).spawn();
        let txErr = "";
        const drained = (async () => {
          for await (const c of tx.stderr) txErr += new TextDecoder().decode(c);
        })();
        const txPid = tx.pid;
        await waitUntil(
          `the sender at ${when?.source ?? pauseAt}`,
          () =>
            when ? when.test(`${rx.stderr}${txErr}`) : statusField(txPid, "State").startsWith("T"),
          90000,
        );
        tx.kill("SIGKILL");
        assert.equal((await tx.status).signal, "SIGKILL");
        await drained;
        await tx.stdout.cancel();
        // A killed sender leaves its work directory; the next sender removes it (its pid gone).
        const left = [...Deno.readDirSync(tmp)].map((e) => e.name);
        assert.equal(left.length, 1, `the killed sender's work directory: ${left}`);
        assert.match(left[0], new RegExp(`^cryo-migrate-${txPid}-`));
        assert.deepEqual(removeStaleWorkDirs(tmp), [`${tmp}/${left[0]}`]);
        assert.deepEqual([...Deno.readDirSync(tmp)], [], "the stale work directory removed");
        const r = await rx.done();
        assert.equal(r.code, 1, r.stderr);
        assert.match(r.stderr, /^cryo: migration: the peer closed the connection$/m);
        assert.equal(r.stdout, "");
        assert.deepEqual([...Deno.readDirSync(work)].map((e) => e.name), ["key"], "nothing kept");
        await waitUntraced(t.pid, before);
        assert.equal(t.poll(), undefined, "the source runs on");
        await Deno.writeTextFile(trigger, "");
        assertChecksPassed(t, CHECKS, await t.wait(60000), {
          what: `the source after the sender died (${when?.source ?? pauseAt})`,
        });
      } finally {
        try {
          tx?.kill("SIGKILL");
        } catch { /* exited */ }
        rx.stop();
        if (tmp) Deno.removeSync(tmp, { recursive: true });
      }
    }
  }),
);

Deno.test(
  "the receiver SIGKILLed during the rounds: the sender fails cleanly, the source runs on untracked; the next reception removes the partial directory",
  withTargets(async () => {
    const { t, trigger, before, work, key, rx } = await interruptibleSetup();
    let tx: Deno.ChildProcess | undefined;
    let rx2: Receiver | undefined;
    try {
      const port = await rx.port();
      const args = ["migrate", String(t.pid), "--to", `127.0.0.1:${port}`, "--key-file", key];
      tx = cliCommand([...args, "--rounds", "8"]).spawn();
      let txErr = "";
      const drained = (async () => {
        for await (const c of tx.stderr) txErr += new TextDecoder().decode(c);
      })();
      // During the second round: the first one was received and acknowledged.
      await waitUntil("the first round", () => /^cryo: round 0: /m.test(txErr), 90000);
      rx.child.kill("SIGKILL");
      await rx.done();
      const st = await tx.status;
      await drained;
      await tx.stdout.cancel();
      assert.equal(st.code, 1, txErr);
      assert.match(txErr, /^cryo: migration failed: .*; the source runs on$/m);
      assert.deepEqual(
        [...Deno.readDirSync(work)].map((e) => e.name).filter((n) => !n.startsWith(".")),
        ["key"],
        "no image directory",
      );
      assert.ok(
        [...Deno.readDirSync(work)].some((e) => e.name.startsWith(".in.migrate-")),
        "the killed receiver left its partial directory",
      );
      await waitUntraced(t.pid, before);
      assert.equal(t.poll(), undefined, "the source runs on");
      // A new receiver into the same directory removes what the killed one left.
      rx2 = new Receiver(["--listen", "0", "--dir", `${work}/in`, "--key-file", key]);
      await rx2.port();
      assert.deepEqual([...Deno.readDirSync(work)].map((e) => e.name), ["key"], "nothing left");
      rx2.stop();
      await rx2.done();
      await Deno.writeTextFile(trigger, "");
      assertChecksPassed(t, CHECKS, await t.wait(60000), { what: "the source after the failure" });
    } finally {
      try {
        tx?.kill("SIGKILL");
      } catch { /* exited */ }
      rx.stop();
      rx2?.stop();
    }
  }),
);

Deno.test(
  "receive --lazy killed while it serves: the restored tree is killed, the chain is kept and restores",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_precopy", READY, { extra: ["16"] });
    const work = await tempDir("cryo-migrate-test-");
    const key = await keyFile(work, "key", "a shared secret of enough bytes\n");
    const rxArgs = ["--listen", "0", "--dir", `${work}/in`, "--key-file", key];
    const rx = new Receiver([...rxArgs, "--lazy"], ["env", "CRYO_TEST_PAUSE_AT=lazy-serve"]);
    let rx2: Receiver | undefined;
    try {
      const port = await rx.port();
      const reaped = t.wait(120000);
      const tx = await runCli([
        "migrate",
        String(t.pid),
        "--to",
        `127.0.0.1:${port}`,
        "--key-file",
        key,
        "--rounds",
        "2",
      ]);
      assert.equal(tx.code, 0, `migrate: ${tx.stderr}`);
      assert.equal((await reaped).kind, "signaled", "the source is killed");
      t.resetAfterRestore();
      const rxPid = rx.child.pid;
      const state = () => {
        try {
          return statusField(rxPid, "State");
        } catch {
          return "gone";
        }
      };
      await waitUntil("the receiver paused while serving", () => state().startsWith("T"), 90000)
        .catch((e) => {
          // What the receiver was doing, for a failure that is rare (seen once in ten runs).
          throw new Error(`${e.message}: receiver ${state()}, stderr: ${rx.stderr}`);
        });
      rx.child.kill("SIGKILL");
      await rx.done();
      const st = await t.wait(60000);
      assert.equal(st.kind, "signaled", "the lazy watchdog killed the restored tree");
      const kept = [...Deno.readDirSync(work)].map((e) => e.name).filter((n) =>
        n.startsWith(".in.migrate-")
      );
      assert.equal(kept.length, 1, "the received chain is kept");
      const chain = `${work}/${kept[0]}`;
      // Another reception into the same directory leaves it alone.
      rx2 = new Receiver(rxArgs);
      await rx2.port();
      rx2.stop();
      await rx2.done();
      const rounds = [...Deno.readDirSync(chain)].map((e) => e.name).filter((n) => /^r\d+$/.test(n))
        .sort((a, b) => Number(a.slice(1)) - Number(b.slice(1)));
      assert.ok(rounds.length >= 2, `rounds kept: ${rounds}`);
      // The last round restores (its chain flattened), the tree exact.
      const restored = await runCli([
        "restore",
        `${chain}/${rounds[rounds.length - 1]}`,
        "--detach",
      ]);
      assert.equal(restored.code, 0, restored.stderr);
      t.resetAfterRestore();
      await Deno.writeTextFile(trigger, "");
      assertChecksPassed(t, CHECKS, await t.wait(60000), { what: "restored from the kept chain" });
    } finally {
      rx.stop();
      rx2?.stop();
    }
  }),
);
