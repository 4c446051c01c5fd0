/**
 * Test helpers for processes blocked in FUSE requests: a mount served by
 * tests/targets/fuse_stall.c, and where a process sleeps in the kernel.
 *
 * @module
 */

import { umount } from "../../ffi/mounts.ts";
import { pathExists, tempDir } from "./fs.ts";
import { startTarget } from "./targets.ts";
import { sleep } from "./wait.ts";

const MNT_DETACH = 2;

/**
 * Starts tests/targets/fuse_stall.c in `mode` on a fresh mount point and
 * runs `body` with it; the server is released (its held requests answered),
 * stopped and unmounted after, whatever happens. Skips (with a message) where
 * /dev/fuse or mounting is not available.
 */
export async function withStalledFuse(
  mode: string,
  body: (file: string, release: () => Promise<void>) => Promise<void>,
): Promise<void> {
  if (!pathExists("/dev/fuse")) {
    console.log("no /dev/fuse: not checked");
    return;
  }
  const work = await tempDir("cryo-oddfuse-");
  const mnt = `${work}/mnt`;
  const releasePath = `${work}/release`;
  Deno.mkdirSync(mnt);
  const server = await startTarget("fuse_stall", [mnt, releasePath, mode]);
  const out = await server.waitFor(/^ready pid=\d+$|^setup failed.*$/m);
  if (out[0].startsWith("setup failed")) {
    console.log(`no FUSE mount here (${out[0]}): not checked`);
    await server.kill();
    return;
  }
  const release = () => Deno.writeTextFile(releasePath, "");
  try {
    await body(`${mnt}/f`, release);
  } finally {
    await release();
    await sleep(100);
    umount(mnt, MNT_DETACH);
    await server.kill();
  }
}

/** The kernel function `pid` sleeps in ("" when gone). */
export function wchanOf(pid: number): string {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/wchan`).trim();
  } catch {
    return "";
  }
}
