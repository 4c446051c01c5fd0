/**
 * Probes of pseudo-terminal state (tests/targets/rt_ttyprobe.c, one mode
 * per case), dumped (killed) and restored with the CLI: the target checks
 * its own terminal after the restore. What comes back: every termios flag
 * word and control character, BOTHER speeds (input != output), the window
 * size with its pixel fields, a partial canonical line under a blocked
 * reader, the output column modulo 8 (a TAB under TAB3, the echo of ERASE
 * after a TAB typed at a prompt), the slave lock, exclusive mode set through either side, a STOP
 * byte of TCIOFF, the master's output stopped (tcflow on the master), a slave closed again (the master reads EIO), /dev/tty
 * open on the controlling terminal, O_NONBLOCK on both sides, a background
 * session leader, two slave fds hung up when the master was closed (still
 * hung up, their pty gone, no controlling terminal). Refused by name at dump, the target running on
 * untouched, no image: a line discipline other than N_TTY, a hung-up
 * slave fd, stopped output, a foreground group whose processes are gone; and a process whose session leader (and
 * controlling terminal) is outside the tree needs `--shell-job`.
 * docs/COMPATIBILITY.md "Terminals: probes of pty state" has the table.
 */

import assert from "node:assert/strict";
import { cstr, rawSyscall, syscallNum } from "../ffi/libc.ts";
import { SYS } from "../ffi/sysno.ts";
import { waitPid, WNOHANG } from "../ffi/wait.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { assertCliOk, assertOneLineError, runCli } from "./helpers/commands.ts";
import { pathExists, tempDir } from "./helpers/fs.ts";
import { SIGUSR1 } from "./helpers/signals.ts";
import { adoptPid, startTarget, type Target, withTargets } from "./helpers/targets.ts";
import { waitUntil } from "./helpers/wait.ts";

const READY = /^ready pid=(\d+) index=(\d+)$/m;

/** The children of `pid` now. */
function childrenOf(pid: number): number[] {
  return Deno.readTextFileSync(`/proc/${pid}/task/${pid}/children`).trim().split(/\s+/)
    .filter(Boolean).map(Number);
}

/**
 * Dumps `t` with the CLI (killing it), reaps its children (orphaned to
 * this subreaper), restores it with `cryo restore --detach`, points `t` at
 * the restored process and lets it check itself.
 */
async function cliRoundTrip(t: Target, extra: string[] = []): Promise<void> {
  const kids = childrenOf(t.pid);
  const dir = `${await tempDir("cryo-ttyprobe-")}/image`;
  assertCliOk(await runCli(["dump", String(t.pid), "--dir", dir, ...extra]), "dump");
  await t.wait(5000);
  t.resetAfterRestore();
  for (const k of kids) {
    await waitUntil(`child ${k} reaped`, () => {
      try {
        return waitPid(k, WNOHANG).kind !== "none";
      } catch {
        return true; // not ours (reaped already)
      }
    });
  }
  const r = await runCli(["restore", dir, "--detach", ...extra]);
  assertCliOk(r, "restore");
  assert.equal(r.stdout, `${t.pid}\n`);
  adoptPid(t.pid, t.outputPath);
  t.signal(SIGUSR1);
}

const RESTORED: [mode: string, checks: string[]][] = [
  ["termios", ["termios", "termios-via-master"]],
  ["speeds", ["speeds", "ispeed", "ospeed"]],
  ["winsize", ["winsize"]],
  ["partial", ["read"]],
  ["column", ["tab-echo", "erase-tab-echo"]],
  ["columnout", ["tab3-column"]],
  ["locked", ["locked", "open-refused"]],
  ["exclmaster", ["excl-slave", "excl-master"]],
  ["exclslave", ["excl-slave", "excl-master"]],
  ["tcioff", ["stop-byte"]],
  ["mstopped", ["master-stopped", "master-write-waits", "master-restarted"]],
  ["hup", ["master-hup", "master-eio"]],
  ["devtty", ["devtty-output", "devtty-sid"]],
  ["devttyonly", ["devtty-output", "devtty-sid"]],
  ["nonblock", ["master-nonblock", "slave-nonblock", "slave-eagain"]],
  ["fgbg", ["sid", "fg"]],
  [
    "hanggone",
    [
      "hung-up-both",
      "hung-up-read-eof",
      "hung-up-write-eio",
      "hung-up-flags",
      "hung-up-gone",
      "hung-up-no-ctty",
    ],
  ],
];

for (const [mode, checks] of RESTORED) {
  Deno.test(
    `ttyprobe: ${mode} comes back (CLI dump, kill, restore)`,
    withTargets(async () => {
      const t = await startTarget("rt_ttyprobe", [mode]);
      await t.waitFor(READY);
      await cliRoundTrip(t);
      assertChecksPassed(t, checks, await t.wait(), { what: `${mode} restored` });
    }),
  );
}

for (const mode of ["hup", "exclslave", "columnout", "mstopped"]) {
  Deno.test(
    `ttyprobe: ${mode} is left as it was by a dump that leaves the target running`,
    withTargets(async () => {
      const t = await startTarget("rt_ttyprobe", [mode]);
      await t.waitFor(READY);
      const dir = `${await tempDir("cryo-ttyprobe-")}/image`;
      assertCliOk(await runCli(["dump", String(t.pid), "--dir", dir, "--leave-running"]), "dump");
      t.signal(SIGUSR1);
      const checks = RESTORED.find(([m]) => m === mode)![1];
      assertChecksPassed(t, checks, await t.wait(), { what: `${mode} left running` });
    }),
  );
}

const REFUSED: [mode: string, message: RegExp, checks: string[]][] = [
  ["ldisc", /fd 3 \(\/dev\/ptmx\): a pty whose line discipline is not N_TTY.*is 27/, ["ldisc"]],
  ["hangup", /fd 4 \(\/dev\/pts\/\d+\): a terminal fd hung up/, ["slave-hung-up", "read-eof"]],
  ["ixoff", /fd 3 .*output is stopped/, ["stopped"]],
  ["fggone", /session leader\): a pty of the tree whose foreground process group has no process/, [
    "fg",
  ]],
];

for (const [mode, message, checks] of REFUSED) {
  Deno.test(
    `ttyprobe: ${mode} is refused at dump by name, the target runs on untouched`,
    withTargets(async () => {
      const t = await startTarget("rt_ttyprobe", [mode]);
      await t.waitFor(READY);
      const dir = `${await tempDir("cryo-ttyprobe-")}/image`;
      const r = await runCli(["dump", String(t.pid), "--dir", dir]);
      assertOneLineError(r, 1, message, `dump of ${mode}`);
      assert.equal(pathExists(dir), false, "no image");
      assert.equal(t.poll(), undefined, "still running");
      t.signal(SIGUSR1);
      assertChecksPassed(t, checks, await t.wait(), { what: `${mode} after the refusal` });
    }),
  );
}

Deno.test(
  "ttyprobe: a process whose session leader and terminal are outside the tree needs --shell-job",
  withTargets(async () => {
    // The parent makes a pty this test holds its controlling terminal; its child is dumped alone.
    const master = syscallNum(SYS.open, cstr("/dev/ptmx"), 2 | 0o400 | 0o2000000, 0);
    try {
      const index = new Int32Array(1);
      rawSyscall(SYS.ioctl, master, 0x80045430, /* TIOCGPTN */ index);
      rawSyscall(SYS.ioctl, master, 0x40045431, /* TIOCSPTLCK */ new Int32Array([0]));
      const t = await startTarget("rt_ttyprobe", ["extcttynofd"], {
        stdin: `/dev/pts/${index[0]}`,
      });
      const m = await t.waitFor(/^ready pid=(\d+) ctty=(\S+)$/m);
      assert.equal(m[2], `/dev/pts/${index[0]}`);
      const child = adoptPid(Number(m[1]), t.outputPath);
      const dir = `${await tempDir("cryo-ttyprobe-")}/image`;
      const r = await runCli(["dump", String(child.pid), "--dir", dir]);
      assertOneLineError(
        r,
        1,
        new RegExp(
          `process ${child.pid} \\(its session leader ${t.pid} is outside the tree\\): ` +
            "needs --shell-job",
        ),
        "dump without --shell-job",
      );
      assert.equal(pathExists(dir), false, "no image");
      assert.ok(pathExists(`/proc/${child.pid}`), "still running");
      assertCliOk(
        await runCli(["dump", String(child.pid), "--dir", dir, "--shell-job"]),
        "dump --shell-job",
      );
    } finally {
      rawSyscall(SYS.close, master);
    }
  }),
);
