/**
 * A file mapped shared may be written by others between the dump and the
 * restore (as every Deno process writes SQLite's `-shm` index of its
 * cache, which a dumped Deno program maps): the image keeps none of its
 * pages, so the restore maps the file as it is now and the process sees
 * what the others wrote. Another file at that path is still refused.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { restore } from "../engine/restore/mod.ts";
import { RestoreError } from "../engine/errors.ts";
import { tempImageDir } from "./helpers/roundtrip.ts";
import { adoptPid, startTarget, withTargets } from "./helpers/targets.ts";
import { tempDir } from "./helpers/fs.ts";
import { waitUntil } from "./helpers/wait.ts";

const SCRIPT = `
import mmap, os, sys, time
work = sys.argv[1]
fd = os.open(work + "/shared", os.O_RDWR)
m = mmap.mmap(fd, 4096, mmap.MAP_SHARED)
os.close(fd)
m[0:6] = b"before"
print("ready", flush=True)
while not os.path.exists(work + "/go"):
    time.sleep(0.02)
print("saw", bytes(m[0:12]).decode(), flush=True)
`;

Deno.test(
  "restore maps a shared file others wrote since the dump, and refuses another file there",
  withTargets(async () => {
    const work = await tempDir("cryo-shared-file-");
    const shared = `${work}/shared`;
    await Deno.writeFile(shared, new Uint8Array(4096));
    const t = await startTarget("/usr/bin/python3", ["-c", SCRIPT, work]);
    await t.waitFor(/^ready$/m);
    const dir = await tempImageDir();
    await checkpoint(t.pid, { dir });
    await t.wait();

    // Another file at the path: refused, naming it.
    await Deno.rename(shared, `${shared}.orig`);
    await Deno.writeFile(shared, new Uint8Array(4096));
    await assert.rejects(
      restore(dir),
      (e) =>
        e instanceof RestoreError &&
        /^cannot restore: file mapped by \d+ .*\/shared is another file than at the dump$/.test(
          e.message,
        ),
    );
    await Deno.rename(`${shared}.orig`, shared);

    // The same file, written (and grown) by another process: restored, the new bytes seen.
    const f = await Deno.open(shared, { write: true });
    await f.write(new TextEncoder().encode("after-others"));
    await f.seek(0, Deno.SeekMode.End);
    await f.write(new Uint8Array(4096));
    f.close();
    const tree = await restore(dir);
    t.resetAfterRestore();
    for (const pid of tree.pids) if (pid !== t.pid) adoptPid(pid);
    await Deno.writeTextFile(`${work}/go`, "");
    await waitUntil("the restored process reported", () => /^saw /m.test(t.output()));
    assert.match(t.output(), /^saw after-others$/m);
  }),
);
