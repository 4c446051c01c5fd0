/**
 * cli/quick.ts parses plain `dump` and `restore` command lines without
 * commander: whatever it accepts, commander must parse to the same argument
 * and options; what it leaves to commander includes every help, error and
 * unusual form.
 */

import assert from "node:assert/strict";
import { quickParse } from "../cli/quick.ts";
import { buildProgram } from "../cli/program.ts";

/** What commander makes of `argv` (actions replaced), or "error" when it refuses it. */
async function commanderParse(
  argv: string[],
): Promise<{ argument: unknown; opts: Record<string, unknown> } | "error"> {
  const program = await buildProgram(["dump", "restore"]);
  let got: { argument: unknown; opts: Record<string, unknown> } | undefined;
  for (const cmd of program.commands) {
    cmd.exitOverride().configureOutput({ writeOut: () => {}, writeErr: () => {} });
    (cmd as unknown as { action(fn: (a: unknown, o: Record<string, unknown>) => void): void })
      .action((argument, opts) => {
        got = { argument, opts: { ...opts } };
      });
  }
  try {
    await program.parseAsync(argv, { from: "user" });
  } catch {
    return "error";
  }
  return got ?? "error";
}

const DUMP = [
  ["dump", "123", "--dir", "/tmp/x"],
  ["dump", "--dir", "/tmp/x", "123"],
  ["dump", "123", "--dir", "/tmp/x", "--leave-running", "--no-sync"],
  ["dump", "123", "--dir", "/tmp/x", "--leave-running", "--no-sync", "--json"],
  ["dump", "7", "--leave-running", "--dir", "d", "--precopy"],
  ["dump", "7", "--leave-running", "--dir", "d", "--no-precopy"],
  ["dump", "7", "--dir", "d", "--pre-dump", "--parent", "p"],
  ["dump", "7", "--dir", "d", "--ext-unix-sk", "--tcp-established", "--shell-job"],
  ["dump", "7", "--dir", "d", "--tcp-close", "--skip-in-flight"],
  ["dump", "7", "--dir", "d", "--tcp-established", "--skip-in-flight"],
  ["dump", "7", "--dir", "d", "--precopy", "--no-precopy"],
  ["dump", "7", "--dir", "d", "--leave-running", "--leave-running"],
  ["dump", "7", "--dir", "d", "--dir", "e"],
  ["dump", "7", "--dir=d"],
  ["dump", "7"],
  ["dump", "--dir", "d"],
  ["dump", "0", "--dir", "d"],
  ["dump", "-1", "--dir", "d"],
  ["dump", "1.5", "--dir", "d"],
  ["dump", "x", "--dir", "d"],
  ["dump", "", "--dir", "d"],
  ["dump", "99999999999999999999", "--dir", "d"],
  ["dump", "7", "8", "--dir", "d"],
  ["dump", "7", "--dir"],
  ["dump", "7", "--dir", "--json"],
  ["dump", "7", "--dir", ""],
  ["dump", "7", "--dir", "d", "--sync"],
  ["dump", "7", "--dir", "d", "--help"],
  ["dump", "7", "--dir", "d", "-h"],
  ["dump", "7", "--dir", "d", "--debug"],
  ["dump", "7", "--dir", "d", "--"],
  ["dump", "7", "--dir", "d", "--detach"],
  ["dump", "7", "--dir", "d", "--no-verify"],
  ["dump", "7", "--dir", "d", "--leave"],
  ["--debug", "dump", "7", "--dir", "d"],
];

const RESTORE = [
  ["restore", "/tmp/x"],
  ["restore", "/tmp/x", "--detach"],
  ["restore", "--detach", "/tmp/x", "--json", "--no-verify"],
  ["restore", "d", "--new-pid-ns", "--trust-image-owner", "--lazy"],
  ["restore", "d", "--ext-unix-sk", "--tcp-established", "--shell-job"],
  ["restore", "d", "--tcp-close", "--detach"],
  ["restore", "d", "--detach", "--detach"],
  ["restore", "d", "--inherit-fd", "1=fd:1"],
  ["restore", "d", "--inherit-fd", "1=fd:1", "2=/tmp/log"],
  ["restore", "d", "e"],
  ["restore"],
  ["restore", ""],
  ["restore", "d", "--verify"],
  ["restore", "d", "--dir", "x"],
  ["restore", "d", "--leave-running"],
  ["restore", "d", "--help"],
  ["restore", "-", "--detach"],
  ["restore", "d", "--detach=1"],
];

Deno.test("cli quick: what it accepts, commander parses the same; the rest goes to commander", async () => {
  let accepted = 0;
  for (const argv of [...DUMP, ...RESTORE]) {
    const quick = quickParse(argv);
    if (!quick) continue;
    accepted++;
    const want = await commanderParse(argv);
    assert.notEqual(want, "error", `commander refuses ${argv.join(" ")}`);
    if (want === "error") continue;
    assert.deepEqual(quick.argument, want.argument, argv.join(" "));
    assert.deepEqual(quick.opts, want.opts, argv.join(" "));
  }
  assert.equal(accepted, 16);
});

Deno.test("cli quick: the plain forms are taken, help, errors and unusual forms are not", () => {
  for (const argv of [DUMP[0], DUMP[2], DUMP[6], RESTORE[0], RESTORE[2]]) {
    assert.ok(quickParse(argv), argv.join(" "));
  }
  for (const argv of [...DUMP.slice(10), ...RESTORE.slice(6)]) {
    assert.equal(quickParse(argv), undefined, argv.join(" "));
  }
  assert.equal(quickParse(["show", "d"]), undefined);
  assert.equal(quickParse([]), undefined);
});
