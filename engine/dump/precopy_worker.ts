/**
 * Worker side of {@link PrecopyLane} (precopy_copy.ts): copies the jobs it
 * is sent, one at a time, and answers each with its result or its error.
 *
 * @module
 */

import { type CopyJob, copyPlanned } from "./precopy_copy.ts";

// deno-lint-ignore no-explicit-any
const scope = self as any;

scope.onmessage = async (e: MessageEvent<CopyJob>) => {
  try {
    scope.postMessage({ result: await copyPlanned(e.data) });
  } catch (err) {
    scope.postMessage({ error: (err as Error).message });
  }
};
