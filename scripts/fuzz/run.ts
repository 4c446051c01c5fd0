/**
 * Running one fuzz case: everything a restore does before it creates a
 * process (load, verify, validate, compile, pre-flight checks, and the
 * files the engine re-creates), with the outcome classified. A refusal is
 * a one-line cryo error; anything else thrown is a bug.
 *
 * @module
 */

import { planRestore, preflight } from "../../engine/restore/mod.ts";
import { ProvidedFds } from "../../engine/restore/provided.ts";
import { CryoError } from "../../engine/errors.ts";
import { ImageFormatError } from "../../engine/image/errors.ts";

/** How a case ended. */
export type Outcome =
  | { kind: "refused"; message: string }
  | { kind: "accepted" }
  | { kind: "bug"; error: unknown };

/** Plans a restore of `dir` as far as it goes without creating a process. */
export async function tryPlan(dir: string): Promise<Outcome> {
  try {
    const plan = await planRestore(dir);
    await preflight(plan);
    const provided = await ProvidedFds.open(plan.ptys, plan.ghosts, plan.dir);
    provided.close();
    return { kind: "accepted" };
  } catch (e) {
    const oneLine = e instanceof Error && !e.message.includes("\n") && e.message.length > 0;
    if ((e instanceof CryoError || e instanceof ImageFormatError) && oneLine) {
      return { kind: "refused", message: (e as Error).message };
    }
    return { kind: "bug", error: e };
  }
}
