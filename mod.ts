/**
 * cryo: checkpoint running Linux processes into executable ELF images and
 * restore them, from TypeScript on Deno.
 *
 * This module is the public API. It imports only relative, `node:` and
 * versioned `npm:` specifiers, so it can be imported by URL from a project
 * without any configuration:
 *
 * ```ts
 * import { checkHost, VERSION } from "https://example.org/cryo/mod.ts";
 * const report = checkHost();
 * if (!report.ready) console.log(report.rows.filter((r) => r.required && !r.ok));
 * ```
 *
 * Running it needs `--allow-all` (FFI, /proc, subprocesses) and root or
 * the capabilities `checkHost()` reports.
 *
 * @module
 */

export { TOOL_VERSION as VERSION } from "./engine/version.ts";
export * from "./engine/model.ts";
export { capabilityNames, checkHost, type CheckReport, type CheckRow } from "./engine/check.ts";
export {
  checkpoint,
  type CheckpointOptions,
  type CheckpointResult,
  type DumpEvent,
} from "./engine/dump/mod.ts";
export {
  type ExitStatus,
  restore,
  type RestoredTree,
  type RestoreOptions,
} from "./engine/restore/mod.ts";
export type { RestoreEvent } from "./engine/restore/session.ts";
export { type ImageModel, readImage } from "./engine/inspect.ts";
export { type ProcessPlan, restorePlan } from "./engine/restore/plan.ts";
export { exportCoreFromDir as exportCore } from "./engine/image/core.ts";
export { CryoError, RestoreError, TargetError, UnsupportedError } from "./engine/errors.ts";
export { ImageFormatError } from "./engine/image/errors.ts";
export * from "./engine/policy/mod.ts";
