/**
 * Worker that checks image checksums on its own thread, so that a restore
 * can verify its images while the restore stubs are already reading them
 * (the main thread is busy driving the restore synchronously).
 *
 * Message in: `{ files: { path: string; checksum: string }[] }`; message
 * out: `{ bad?: { path: string; got: string; want: string }; error?: string }`.
 *
 * @module
 */

import { checksumFile } from "../image/writer.ts";

// deno-lint-ignore no-explicit-any
const scope = self as any;
scope.onmessage = async (e: MessageEvent<{ files: { path: string; checksum: string }[] }>) => {
  try {
    for (const f of e.data.files) {
      if (!f.checksum) continue;
      const got = await checksumFile(f.path);
      if (got !== f.checksum) {
        scope.postMessage({ bad: { path: f.path, got, want: f.checksum } });
        return;
      }
    }
    scope.postMessage({});
  } catch (err) {
    scope.postMessage({ error: (err as Error).message });
  }
};
