/**
 * A real tmux server (Debian's tmux) with an interactive bash in a pane:
 * checkpointed while the shell holds state (a variable, its cwd), killed,
 * restored, and then driven through tmux's own client commands — the
 * listening socket, the pty pair, the shell's session and foreground group
 * all have to be right for `send-keys` and `capture-pane` to work.
 */

import assert from "node:assert/strict";
import { checkpoint, type CheckpointResult } from "../engine/dump/mod.ts";
import { restore } from "../engine/restore/mod.ts";
import { tempDir } from "./helpers/fs.ts";
import { runCommand } from "./helpers/commands.ts";
import { adoptPid, becomeSubreaper, withTargets } from "./helpers/targets.ts";
import { waitUntil } from "./helpers/wait.ts";

const TMUX = ["/usr/bin/tmux", "/bin/tmux"].find((p) => {
  try {
    return Deno.statSync(p).isFile;
  } catch {
    return false;
  }
});

const VIM = ["/usr/bin/vim.basic", "/usr/bin/vim.tiny", "/usr/bin/vim"].find((p) => {
  try {
    return Deno.statSync(p).isFile;
  } catch {
    return false;
  }
});

if (VIM === undefined) {
  console.error(
    "restore_tmux_test: vim not found (apt-get install -y vim-tiny); skipping its test",
  );
}

/**
 * Checkpoints the tmux server once it has closed the connections of the
 * tmux clients this test ran: until it has, the accepted socket of a client
 * that exited names that client in SO_PEERCRED, and the dump (rightly)
 * refuses it, leaving the server running.
 */
async function checkpointSettled(server: number, dir: string): Promise<CheckpointResult> {
  for (let tries = 0;; tries++) {
    try {
      return await checkpoint(server, { dir });
    } catch (e) {
      if (tries >= 50 || !/SO_PEERCRED/.test(String(e))) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** The pids of every descendant of `root` (and root), from /proc's children lists. */
async function processesUnder(root: number): Promise<number[]> {
  const out = [root];
  for (let i = 0; i < out.length; i++) {
    let kids = "";
    try {
      for (const t of Deno.readDirSync(`/proc/${out[i]}/task`)) {
        kids += " " + await Deno.readTextFile(`/proc/${out[i]}/task/${t.name}/children`);
      }
    } catch { /* gone */ }
    out.push(...kids.split(/\s+/).filter(Boolean).map(Number));
  }
  return out;
}

Deno.test({
  name: "tmux: a server with an interactive bash goes on after dump, kill and restore",
  ignore: TMUX === undefined,
  fn: withTargets(async () => {
    becomeSubreaper(); // the server daemonizes: it becomes our child when its parent exits
    const dir = await tempDir("cryo-tmux-");
    const sock = `${dir}/sock`;
    const tmux = (...args: string[]) => runCommand([TMUX!, "-S", sock, "-f", "/dev/null", ...args]);
    const pane = async () => (await tmux("capture-pane", "-p", "-t", "t")).stdout;
    const started = await tmux(
      "new-session",
      "-d",
      "-s",
      "t",
      "-x",
      "80",
      "-y",
      "24",
      "env -i PS1='$ ' TERM=screen bash --norc --noprofile",
    );
    assert.equal(started.code, 0, started.stderr);
    const server = Number((await tmux("display", "-p", "#{pid}")).stdout.trim());
    const srv = adoptPid(server);
    const shell = Number((await tmux("display", "-p", "-t", "t", "#{pane_pid}")).stdout.trim());
    adoptPid(shell);
    await tmux("send-keys", "-t", "t", `cd ${dir}; X=frozen-$((6*7)); echo before-$X`, "Enter");
    await waitUntil("the shell answered", async () => (await pane()).includes("before-frozen-42"));

    const image = `${dir}/image`;
    const dump = await checkpointSettled(server, image);
    assert.deepEqual(dump.manifest.processes.map((p) => p.pid).sort(), [server, shell].sort());
    await waitUntil("the server is gone", () => {
      srv.poll();
      try {
        Deno.statSync(`/proc/${server}`);
        return false;
      } catch {
        return true;
      }
    });
    const tree = await restore(image);
    srv.resetAfterRestore();
    assert.deepEqual([...tree.pids].sort(), [server, shell].sort());

    // The same shell, with its variable and cwd, through a new tmux client.
    await tmux("send-keys", "-t", "t", "echo after-$X in $(pwd)", "Enter");
    await waitUntil(
      "the restored shell answered",
      async () => (await pane()).includes(`after-frozen-42 in ${dir}`),
    );
    const sessions = await tmux("list-sessions", "-F", "#{session_name}:#{session_windows}");
    assert.equal(sessions.stdout.trim(), "t:1");
    await tmux("kill-server");
  }),
});

Deno.test({
  name:
    "tmux: bash with a running and a stopped job and vim editing unsaved text goes on after restore",
  ignore: TMUX === undefined || VIM === undefined,
  fn: withTargets(async () => {
    becomeSubreaper();
    const dir = await tempDir("cryo-tmux-vim-");
    const sock = `${dir}/sock`;
    const tmux = (...args: string[]) => runCommand([TMUX!, "-S", sock, "-f", "/dev/null", ...args]);
    const pane = async () => (await tmux("capture-pane", "-p", "-t", "t")).stdout;
    const keys = (...k: string[]) => tmux("send-keys", "-t", "t", ...k);
    const started = await tmux(
      "new-session",
      "-d",
      "-s",
      "t",
      "-x",
      "80",
      "-y",
      "24",
      `env -i PS1='$ ' TERM=screen HOME=${dir} bash --norc --noprofile`,
    );
    assert.equal(started.code, 0, started.stderr);
    const server = Number((await tmux("display", "-p", "#{pid}")).stdout.trim());
    const srv = adoptPid(server);
    await keys(`cd ${dir}; sleep infinity & sleep 3600`, "Enter");
    await waitUntil("sleep 3600 in the foreground", async () => {
      for (const pid of await processesUnder(server)) {
        try {
          const cmd = await Deno.readTextFile(`/proc/${pid}/cmdline`);
          const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
          const [, , pgrp, , , tpgid] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
          if (cmd === "sleep\x003600\x00" && pgrp === tpgid) return true;
        } catch { /* gone */ }
      }
      return false;
    });
    await keys("C-z");
    await waitUntil("the job stopped", async () => (await pane()).includes("Stopped"));
    await keys(`${VIM} -u NONE -i NONE -N notes.txt`, "Enter");
    await waitUntil("vim", async () => /"notes.txt" \[New\]/.test(await pane()));
    await keys("i", "typed before the dump", "Escape");
    await waitUntil("the text", async () => (await pane()).includes("typed before the dump"));
    for (const pid of await processesUnder(server)) adoptPid(pid);

    const image = `${dir}/image`;
    const dump = await checkpointSettled(server, image);
    await waitUntil("the server is gone", () => {
      srv.poll();
      try {
        Deno.statSync(`/proc/${server}`);
        return false;
      } catch {
        return true;
      }
    });
    const tree = await restore(image);
    srv.resetAfterRestore();
    assert.deepEqual([...tree.pids].sort(), dump.manifest.processes.map((p) => p.pid).sort());

    await keys("o", "typed after the restore", "Escape", ":wq", "Enter");
    await waitUntil("vim saved", async () => {
      try {
        return (await Deno.readTextFile(`${dir}/notes.txt`)).includes("after");
      } catch {
        return false;
      }
    });
    assert.equal(
      await Deno.readTextFile(`${dir}/notes.txt`),
      "typed before the dump\ntyped after the restore\n",
    );
    // Keys typed while vim restores the terminal would be flushed: wait for the prompt.
    await waitUntil("vim exited", async () => (await processesUnder(server)).length === 4);
    await waitUntil("the prompt", async () => /\$ $/.test((await pane()).trimEnd() + " "));
    await keys("clear; jobs; echo jobs-$((1+1))", "Enter");
    await waitUntil("jobs", async () => /^jobs-2$/m.test(await pane()), 3000).catch(async (e) => {
      throw new Error(
        `${e.message}; pane:\n${await pane()}\nps:\n${
          (await runCommand(["ps", "-o", "pid,ppid,pgid,sid,tpgid,stat,wchan:20,args", "-e"]))
            .stdout.split("\n").filter((l) => /sleep|bash|vim|tmux/.test(l)).join("\n")
        }`,
      );
    });
    const jobs = await pane();
    assert.match(jobs, /Running +sleep infinity &/, jobs);
    assert.match(jobs, /Stopped +sleep 3600/, jobs);
    await tmux("kill-server");
  }),
});
