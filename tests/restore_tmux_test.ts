/**
 * A real tmux server (Debian's tmux) with an interactive bash in a pane:
 * checkpointed while the shell holds state (a variable, its cwd), killed,
 * restored, and then driven through tmux's own client commands — the
 * listening socket, the pty pair, the shell's session and foreground group
 * all have to be right for `send-keys` and `capture-pane` to work.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
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
    const dump = await checkpoint(server, { dir: image });
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
