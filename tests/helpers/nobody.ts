/**
 * Running the cryo CLI as the unprivileged user 65534 (nobody): a copy of
 * Deno's npm cache it can read, and the setpriv wrapper.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type CommandResult, runCli } from "./commands.ts";
import { tempDir } from "./fs.ts";

/** setpriv arguments that run a command as uid/gid 65534 without groups. */
export const NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];

/** The same, keeping CAP_SYS_PTRACE and CAP_CHECKPOINT_RESTORE (ambient capabilities). */
export const NOBODY_WITH_CAPS = [
  ...NOBODY,
  "--inh-caps=+sys_ptrace,+checkpoint_restore",
  "--ambient-caps=+sys_ptrace,+checkpoint_restore",
];

/** A DENO_DIR holding a copy of the npm cache, owned by 65534 (removed with the test's temp dirs). */
export async function denoDirForNobody(): Promise<string> {
  const home = Deno.env.get("HOME") ?? "/root";
  const current = Deno.env.get("DENO_DIR") ??
    `${Deno.env.get("XDG_CACHE_HOME") ?? `${home}/.cache`}/deno`;
  const dir = await tempDir("cryo-denodir-");
  const cp = await new Deno.Command("cp", { args: ["-r", `${current}/npm`, dir] }).output();
  assert.ok(cp.success, new TextDecoder().decode(cp.stderr));
  const chown = await new Deno.Command("chown", { args: ["-R", "65534:65534", dir] }).output();
  assert.ok(chown.success);
  return dir;
}

/** Runs the CLI under `wrapper` (NOBODY or NOBODY_WITH_CAPS) with `denoDir`. */
export function runCliAs(
  wrapper: string[],
  denoDir: string,
  args: string[],
): Promise<CommandResult> {
  return runCli(args, { wrapper, env: { DENO_DIR: denoDir } });
}
