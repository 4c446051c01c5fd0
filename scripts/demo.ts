/**
 * `deno task demo`: checkpoint a counting shell loop, kill it, restore it
 * from its ELF images with the same pid, and watch it count on.
 *
 * @module
 */

import { resolve } from "node:path";
import { posixSpawn } from "../ffi/spawn.ts";
import { rawSyscall } from "../ffi/libc.ts";
import { SYS } from "../ffi/sysno.ts";
import { waitPid, WNOHANG } from "../ffi/wait.ts";
import { checkpoint } from "../engine/dump/mod.ts";
import { restore } from "../engine/restore/mod.ts";

const dir = resolve("demo-images");
const out = await Deno.makeTempFile({ prefix: "cryo-demo-" });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const say = (s: string) => console.log(`\x1b[1m==> ${s}\x1b[0m`);
const counterScript = 'i=0; while :; do i=$((i+1)); echo "tick $i"; sleep 0.5; done';

function lines(): string[] {
  return Deno.readTextFileSync(out).split("\n").filter(Boolean);
}

async function follow(until: (n: number) => boolean, from: number): Promise<number> {
  let shown = from;
  for (let i = 0; i < 200; i++) {
    const l = lines();
    for (; shown < l.length; shown++) console.log(`    | ${l[shown]}`);
    if (until(l.length)) return shown;
    await sleep(50);
  }
  throw new Error("the counter stopped counting");
}

rawSyscall(SYS.prctl, 36, /* PR_SET_CHILD_SUBREAPER */ 1, 0, 0, 0);
await Deno.remove(dir, { recursive: true }).catch(() => {});
say(`starting a counter: sh -c '${counterScript}'`);
const pid = posixSpawn("/bin/sh", ["sh", "-c", counterScript], {
  fileActions: [
    { kind: "open", fd: 0, path: "/dev/null", flags: 0 },
    { kind: "open", fd: 1, path: out, flags: 0o1 | 0o2000 },
  ],
});
console.log(`    counter pid ${pid}`);
let shown = await follow((n) => n >= 4, 0);

say(`checkpointing pid ${pid} and its children into ${dir} (cryo dump ${pid} --dir demo-images)`);
// Its stderr is this terminal: the shell-job opt-in lets cryo save that (and restore onto ours).
const dump = await checkpoint(pid, { dir, optIns: ["shell-job"] });
const s = dump.stats;
console.log(
  `    ${s.processes} processes, ${s.threads} threads, ${s.mappings} mappings, ` +
    `${(s.pagesBytes / 1024).toFixed(0)} KiB of pages, frozen ${
      (s.freezeSeconds * 1000).toFixed(0)
    } ms`,
);
for (const p of dump.manifest.processes) console.log(`    ${dir}/${p.file}  (${p.comm})`);
say("the counter was killed; its images are executable ELF files:");
const file = `${dir}/${dump.manifest.processes[0].file}`;
const readelf = await new Deno.Command("readelf", { args: ["-h", file] }).output().catch(() =>
  null
);
if (readelf?.success) {
  for (const l of new TextDecoder().decode(readelf.stdout).split("\n")) {
    if (/Type:|Entry point|Machine:/.test(l)) console.log(`    ${l.trim()}`);
  }
}
await sleep(1000);
console.log(`    (one second later, nothing counts: ${lines().length} lines so far)`);

say(`restoring from ${dir} (cryo restore demo-images)`);
const tree = await restore(dir, { optIns: ["shell-job"] });
console.log(
  `    restored pids ${tree.pids.join(", ")} in ${(tree.seconds * 1000).toFixed(0)} ms ` +
    `(root pid ${tree.rootPid} ${tree.rootPid === pid ? "is the original pid" : "DIFFERS"})`,
);
shown = await follow((n) => n >= shown + 4, shown);

say("it continued from where it stopped; stopping it now");
tree.kill(9);
await tree.exited;
for (const p of tree.pids) {
  try {
    waitPid(p, WNOHANG);
  } catch { /* not ours */ }
}
await Deno.remove(out).catch(() => {});
say(`done; inspect the images with: deno run -A cli.ts show demo-images`);
