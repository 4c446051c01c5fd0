/**
 * The restorability table (engine/support.ts): docs/ARCHITECTURE.md shows
 * it as it is, and a dump of a tree holding something the table refuses
 * fails while the tree is frozen, writes nothing and leaves the tree
 * running exactly as before.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { UnsupportedError } from "../engine/errors.ts";
import { supportTableMarkdown } from "../engine/support.ts";
import { pathExists, tempDir } from "./helpers/fs.ts";
import { statusField } from "./helpers/proc.ts";
import { tempImageDir } from "./helpers/roundtrip.ts";
import { startTarget, withTargets } from "./helpers/targets.ts";
import { waitUntil } from "./helpers/wait.ts";
import { signalThenPass } from "./helpers/checks.ts";

/** The cells of a Markdown table, whatever its column padding. */
function tableCells(markdown: string): string[][] {
  return markdown.trim().split("\n").map((line) =>
    line.split("|").map((c) => c.trim().replace(/^-+$/, "-"))
  );
}

Deno.test("support: docs/ARCHITECTURE.md shows the restorability table as the code has it", async () => {
  const doc = await Deno.readTextFile(new URL("../docs/ARCHITECTURE.md", import.meta.url));
  const m = doc.match(/<!-- support-table -->\n([\s\S]*?)\n<!-- \/support-table -->/);
  assert.ok(m, "docs/ARCHITECTURE.md has no <!-- support-table --> section");
  assert.deepEqual(tableCells(m[1]), tableCells(supportTableMarkdown()));
});

/** Each refused kind of tests/targets/refused_kinds.c and the row its refusal line names. */
const REFUSED: Record<string, RegExp> = {
  socket: /other netlink sockets/,
  "inotify-queued": /inotify events not yet read: \d+ bytes/,
  "inotify-gap": /inotify watch descriptors more than 2048 numbers.*: 2100 unused watch numbers/,
  "inotify-shared": /inotify instances shared by several processes.*: shared with process \d+ fd/,
  "pidfd-shared": /pidfds shared by several processes.*: shared with process \d+ fd/,
  "pidfd-outside": /pidfds of processes outside the tree: pid \d+ is not in the tree/,
  "pidfd-dead":
    /pidfds of exited processes that dumped core, of exited threads.*\((?:a thread's pidfd|no exit status recorded)\)/,
  io_uring: /io_uring/,
  userfaultfd: /userfaultfd: its registered ranges/,
  perf: /perf events: counters cannot be re-created/,
  fanotify: /fanotify: needs a global view/,
  bpf: /bpf maps and programs/,
};

for (const [kind, line] of Object.entries(REFUSED)) {
  Deno.test(
    `support: a dump refused for ${kind} leaves no image and the tree running untouched`,
    withTargets(async () => {
      const work = await tempDir("cryo-refused-");
      const t = await startTarget("refused_kinds", [kind, work]);
      const [, fd] = (await t.waitFor(/^ready pid=\d+ fd=(\d+)$/m)).slice(0, 2);
      const dir = await tempImageDir();
      await assert.rejects(
        () => checkpoint(t.pid, { dir }),
        (e: unknown) =>
          e instanceof UnsupportedError &&
          new RegExp(`fd ${fd} [^;]*${line.source}`).test(e.message),
      );
      assert.equal(pathExists(dir), false, "an image directory was left behind");
      assert.equal(statusField(t.pid, "TracerPid"), "0");
      // Just detached, it may still be on its way back into sigsuspend.
      await waitUntil("the target to sleep again", () => /^S/.test(statusField(t.pid, "State")));
      await signalThenPass(t);
    }),
  );
}
