/**
 * cryo's engine run inside a tree's pid and mount namespaces (started by
 * the programs of engine/pidns/programs.ts; see engine/pidns/mod.ts). It
 * takes one JSON request as its argument and writes its outcome, as JSON,
 * to the request's result file (written whole, then renamed). It prints
 * nothing.
 *
 * - `{op: "dump", dir, leaveRunning, optIns, sync}`: dumps pid 1; without
 *   leaveRunning it writes the result once the image is complete and waits,
 *   tree frozen, to be killed with the namespace by the cryo outside.
 * - `{op: "restore", adopt: true, dir, ...}`: restores the image whose root
 *   is pid 1: pid 1 exists already (the namespace's init, blocked on the go
 *   pipe, fd 4); the engine seizes it and writes the byte that lets it exec
 *   the root image.
 * - `{op: "restore", adopt: false, ...}`: restores any tree as usual (the
 *   namespace's init is cryo's reaper), then writes the go byte.
 *
 * @module
 */

import { checkpoint } from "../dump/mod.ts";
import { restore } from "../restore/mod.ts";
import { OWN_PID_NAMESPACE } from "./mod.ts";
import { restoreNamespaceExtras } from "./extras.ts";
import { checkImageDirTrust } from "../restore/trust.ts";
import type { Manifest } from "../model.ts";

function readManifest(dir: string): Manifest {
  return JSON.parse(Deno.readTextFileSync(`${dir}/manifest.json`));
}

/** The fd on which the namespace's init waits for its go byte. */
const GO_FD = 4;

/** Lets the namespace's init go on (its go pipe). */
function go(): void {
  Deno.writeFileSync(`/proc/self/fd/${GO_FD}`, new Uint8Array([1]));
}

function writeResult(file: string, value: unknown): void {
  Deno.writeTextFileSync(`${file}.part`, JSON.stringify(value));
  Deno.renameSync(`${file}.part`, file);
}

async function main(): Promise<void> {
  const req = JSON.parse(Deno.args[0]);
  try {
    if (req.op === "dump") {
      const r = await checkpoint(1, {
        dir: req.dir,
        leaveRunning: req.leaveRunning,
        optIns: req.optIns,
        sync: req.sync,
        pidNamespace: OWN_PID_NAMESPACE,
        ...(req.extras ? { namespaceExtras: req.extras } : {}),
        beforeKill: (done) => {
          writeResult(req.result, { ok: true, ...done });
          // The cryo outside kills the namespace (and this engine) now.
          for (;;) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1000);
        },
      });
      writeResult(req.result, { ok: true, ...r });
    } else if (req.op === "restore") {
      checkImageDirTrust(req.dir, req.trustImageOwner); // before anything the image says is made
      restoreNamespaceExtras(readManifest(req.dir).namespaces, req.dir);
      const tree = await restore(req.dir, {
        verifyChecksums: req.verifyChecksums,
        optIns: req.optIns,
        trustImageOwner: req.trustImageOwner,
        allowClockBackwards: req.allowClockBackwards,
        newAuditSession: req.newAuditSession,
        inheritFds: new Map(req.inheritFds),
        ...(req.adopt ? { existingRoot: { pid: 1, go } } : {}),
      });
      writeResult(req.result, { ok: true, pids: tree.pids, seconds: tree.seconds });
      if (!req.adopt) go(); // the init adopts the root once this engine exits
    }
  } catch (e) {
    const err = e as Error;
    writeResult(req.result, { ok: false, message: err.message, kind: err.constructor.name });
  }
  Deno.exit(0);
}

if (import.meta.main) await main();
