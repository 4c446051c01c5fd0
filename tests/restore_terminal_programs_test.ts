/**
 * Full-screen terminal programs across dump, kill and restore, driven from
 * outside through their multiplexer's own client commands (skipped, with a
 * message, when not installed):
 *
 * - GNU screen (another multiplexer than tmux: its own pty handling and a
 *   named socket in SCREENDIR) with an interactive bash holding a variable;
 * - `less` paging a file and `top` refreshing, each in a tmux pane.
 */

import assert from "node:assert/strict";
import { checkpoint, type CheckpointResult } from "../engine/dump/mod.ts";
import { restore } from "../engine/restore/mod.ts";
import { tempDir } from "./helpers/fs.ts";
import { runCommand } from "./helpers/commands.ts";
import {
  adoptPid,
  becomeSubreaper,
  startTarget,
  type Target,
  withTargets,
} from "./helpers/targets.ts";
import { needProgram } from "./helpers/servers.ts";
import { waitUntil } from "./helpers/wait.ts";

/** The path of program `name` (a line on stderr when the tests needing it skip). */
const need = (name: string, pkg: string) =>
  needProgram("restore_terminal_programs_test", name, pkg);

/**
 * Checkpoints `pid` once it has closed the connections of the clients this
 * test ran (until then an accepted socket names an exited client in
 * SO_PEERCRED and the dump refuses it, leaving the program running).
 */
async function checkpointSettled(pid: number, dir: string): Promise<CheckpointResult> {
  for (let tries = 0;; tries++) {
    try {
      return await checkpoint(pid, { dir });
    } catch (e) {
      if (tries >= 50 || !/SO_PEERCRED/.test(String(e))) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** The pids of every descendant of `root` (and root), from /proc's children lists. */
function processesUnder(root: number): number[] {
  const out = [root];
  for (let i = 0; i < out.length; i++) {
    let kids = "";
    try {
      for (const t of Deno.readDirSync(`/proc/${out[i]}/task`)) {
        kids += " " + Deno.readTextFileSync(`/proc/${out[i]}/task/${t.name}/children`);
      }
    } catch { /* gone */ }
    out.push(...kids.split(/\s+/).filter(Boolean).map(Number));
  }
  return out;
}

/** Waits until `pid` is gone (reaped through `t` when it is our child). */
async function waitGone(t: Target, pid: number): Promise<void> {
  await waitUntil(`${pid} gone`, () => {
    t.poll();
    try {
      Deno.statSync(`/proc/${pid}`);
      return false;
    } catch {
      return true;
    }
  });
}

/** Dumps the tree at `root`, waits until it is gone and restores it; returns the restored pids. */
async function dumpKillRestoreTree(t: Target, root: number, image: string): Promise<number[]> {
  const dump = await checkpointSettled(root, image);
  await waitGone(t, root);
  const tree = await restore(image);
  t.resetAfterRestore();
  const pids = [...tree.pids].sort();
  assert.deepEqual(pids, dump.manifest.processes.map((p) => p.pid).sort());
  return pids;
}

const screen = need("screen", "screen");

Deno.test({
  name: "GNU screen: a session with an interactive bash goes on after dump, kill and restore",
  ignore: !screen,
  fn: withTargets(async () => {
    const dir = await tempDir("cryo-screen-");
    const screenDir = `${dir}/s`;
    await Deno.mkdir(screenDir, { mode: 0o700 });
    const env = { SCREENDIR: screenDir, HOME: dir, TERM: "xterm", PATH: "/usr/bin:/bin" };
    const scr = (...args: string[]) => runCommand([screen!, "-S", "t", ...args], { env });
    const hardcopy = async () => {
      await Deno.remove(`${dir}/copy`).catch(() => {});
      await scr("-X", "hardcopy", `${dir}/copy`);
      try {
        return await Deno.readTextFile(`${dir}/copy`);
      } catch {
        return "";
      }
    };
    // -D -m: the session's server, in the foreground (no fork): our child.
    const t = await startTarget("/usr/bin/env", [
      ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
      screen!,
      "-D",
      "-m",
      "-S",
      "t",
      "-c",
      "/dev/null",
      "/usr/bin/env",
      "-i",
      "PS1=$ ",
      "TERM=screen",
      "bash",
      "--norc",
      "--noprofile",
    ]);
    await waitUntil("screen's socket", () => [...Deno.readDirSync(screenDir)].length > 0);
    await waitUntil("the shell's prompt", async () => /^\$/m.test(await hardcopy()));
    // (screen expands $NAME in its commands' arguments: the shell's variable is shown by declare)
    await scr("-X", "stuff", `cd ${dir}; X=frozen-$((6*7)); declare -p X\n`);
    await waitUntil("the shell answered", async () => (await hardcopy()).includes('X="frozen-42"'));
    for (const pid of processesUnder(t.pid)) if (pid !== t.pid) adoptPid(pid);

    await dumpKillRestoreTree(t, t.pid, `${dir}/image`);
    await scr("-X", "stuff", "clear; declare -p X; pwd\n");
    await waitUntil(
      "the restored shell answered",
      async () => (await hardcopy()).includes(`X="frozen-42"\n${dir}\n`),
    );
    const list = await scr("-ls");
    assert.match(list.stdout, /\.t\s/, list.stdout);
    assert.equal(t.poll(), undefined, `the restored screen exited:\n${t.output()}`);
    await scr("-X", "quit");
  }),
});

const tmuxPath = need("tmux", "tmux");
const lessPath = need("less", "less");
const topPath = need("top", "procps");

/**
 * Runs `command` alone in a new tmux session, waits for `ready` on its
 * pane, dumps the tmux server's tree, kills it and restores it; returns
 * the tmux client runner and the pane reader.
 */
async function tmuxRoundTrip(
  command: string,
  ready: RegExp,
): Promise<{
  tmux: (...a: string[]) => Promise<{ stdout: string }>;
  pane: () => Promise<string>;
  dir: string;
}> {
  becomeSubreaper(); // the server daemonizes: it becomes our child when its parent exits
  const dir = await tempDir("cryo-tmux-term-");
  const sock = `${dir}/sock`;
  const tmux = (...args: string[]) =>
    runCommand([tmuxPath!, "-S", sock, "-f", "/dev/null", ...args]);
  const pane = async () => (await tmux("capture-pane", "-p", "-t", "t")).stdout;
  const started = await tmux("new-session", "-d", "-s", "t", "-x", "80", "-y", "24", command);
  assert.equal(started.code, 0, started.stderr);
  const server = Number((await tmux("display", "-p", "#{pid}")).stdout.trim());
  const srv = adoptPid(server);
  await waitUntil(`${ready} on the pane`, async () => ready.test(await pane()));
  for (const pid of processesUnder(server)) if (pid !== server) adoptPid(pid);
  await dumpKillRestoreTree(srv, server, `${dir}/image`);
  return { tmux, pane, dir };
}

Deno.test({
  name: "less in a tmux pane pages on after dump, kill and restore",
  ignore: !tmuxPath || !lessPath,
  fn: withTargets(async () => {
    const file = `${await tempDir("cryo-less-")}/lines.txt`;
    await Deno.writeTextFile(
      file,
      Array.from({ length: 500 }, (_, i) => `line ${i + 1}`).join("\n") + "\n",
    );
    const { tmux, pane } = await tmuxRoundTrip(
      `env -i TERM=screen LESSHISTFILE=- less ${file}`,
      /^line 1$/m,
    );
    await tmux("send-keys", "-t", "t", "G");
    await waitUntil("less went to the end", async () => /^line 500$/m.test(await pane()));
    await tmux("send-keys", "-t", "t", "g");
    await waitUntil("less went back to the top", async () => /^line 1$/m.test(await pane()));
    await tmux("send-keys", "-t", "t", "q");
    await tmux("kill-server");
  }),
});

Deno.test({
  name: "top in a tmux pane refreshes and takes keys after dump, kill and restore",
  ignore: !tmuxPath || !topPath,
  fn: withTargets(async () => {
    const { tmux, pane } = await tmuxRoundTrip(
      "env -i TERM=screen HOME=/nonexistent top -d 0.3",
      /^top - \d\d:\d\d:\d\d/m,
    );
    const clock = async () => (await pane()).match(/^top - (\d\d:\d\d:\d\d)/m)?.[1];
    const first = await clock();
    await waitUntil("top refreshed", async () => {
      const now = await clock();
      return now !== undefined && now !== first;
    });
    await tmux("send-keys", "-t", "t", "q");
    await waitUntil("top quit on its key", async () => !/^top - /m.test(await pane()));
    await tmux("kill-server");
  }),
});
