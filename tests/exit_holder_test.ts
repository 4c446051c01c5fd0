/**
 * ffi/exit_holder.ts: the holder of cryo's memory past its exit (`restore
 * --detach`'s last step). A Deno process makes one and exits: the holder
 * shares its memory while it lives, holds no fd, blocks every signal, and
 * dies by SIGKILL with it; its pipes reach EOF without waiting for it.
 *
 * @module
 */

import assert from "node:assert/strict";
import { becomeSubreaper } from "./helpers/targets.ts";
import { deadlineIn } from "./helpers/wait.ts";
import { __WALL, waitPid, WNOHANG } from "../ffi/wait.ts";
import { rawSyscall } from "../ffi/libc.ts";
import { SYS } from "../ffi/sysno.ts";

const HOLDER = new URL("../ffi/exit_holder.ts", import.meta.url).href;

/** The holder's status once it is a zombie of this process, or undefined while it lives. */
function tryReap(pid: number): { kind: string; signal?: number } | undefined {
  const st = waitPid(pid, __WALL | WNOHANG);
  return st.kind === "none" ? undefined : st as { kind: string; signal?: number };
}

/** Fields of /proc/<pid>/status. */
function status(pid: number): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of Deno.readTextFileSync(`/proc/${pid}/status`).split("\n")) {
    const at = line.indexOf(":");
    if (at > 0) out.set(line.slice(0, at), line.slice(at + 1).trim());
  }
  return out;
}

Deno.test({
  name: "a holder shares its maker's memory, holds no fd, blocks signals, and dies with it",
  ignore: Deno.build.arch !== "x86_64",
  fn: async () => {
    becomeSubreaper(); // the holder, orphaned, comes back to this process to be reaped
    const dir = await Deno.makeTempDir();
    const script = `${dir}/maker.ts`;
    await Deno.writeTextFile(
      script,
      `import { holdMemoryPastExit } from "${HOLDER}";
const pid = holdMemoryPastExit();
console.log(pid);
await new Promise((r) => setTimeout(r, Number(Deno.args[0])));
Deno.exit(0);
`,
    );
    let holder = 0;
    try {
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", script, "1500"],
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
      const reader = child.stdout.getReader();
      const first = new TextDecoder().decode((await reader.read()).value);
      holder = Number(first.trim());
      assert(holder > 0, `a holder was made: ${first}`);
      // While its maker lives: the same memory, no fd, every signal blocked, its maker's child.
      const own = status(holder);
      assert.equal(own.get("PPid"), String(child.pid));
      assert.equal(own.get("SigBlk"), "fffffffffffbfeff", "all but SIGKILL and SIGSTOP");
      assert.equal(Deno.readDirSync(`/proc/${holder}/fd`).toArray().length, 0, "no fd");
      // kcmp(KCMP_VM): 0 when both share one address space.
      assert.equal(rawSyscall(SYS.kcmp, holder, child.pid, 1, 0, 0), 0n, "the same memory");
      assert.notEqual(rawSyscall(SYS.kcmp, holder, Deno.pid, 1, 0, 0), 0n, "not this one's");
      // Its maker exits: the pipe reaches EOF, and the holder dies by SIGKILL.
      while (!(await reader.read()).done) { /* the rest of stdout */ }
      assert.equal((await child.status).code, 0);
      const deadline = deadlineIn(5000);
      let got: { kind: string; signal?: number } | undefined;
      while (!got && Date.now() < deadline) {
        got = tryReap(holder);
        if (!got) await new Promise((r) => setTimeout(r, 10));
      }
      assert.equal(got?.kind, "signaled", "the holder died with its maker");
      assert.equal(got?.signal, 9);
      holder = 0;
    } finally {
      if (holder > 0) {
        try {
          Deno.kill(holder, "SIGKILL");
        } catch { /* gone */ }
        try {
          waitPid(holder);
        } catch { /* not ours */ }
      }
      await Deno.remove(dir, { recursive: true });
    }
  },
});
