/**
 * Test helpers for what the C targets print about themselves: their
 * self-check reports ("check <name> ok|FAIL <detail>" lines, then PASS or
 * FAIL; see tests/targets/common.h) and their `key=value` facts.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { WaitStatus } from "../../ffi/wait.ts";
import type { Target } from "./targets.ts";
import { SIGUSR1 } from "./signals.ts";

/** The exit code of a process that exited, undefined if it was killed by a signal. */
function exitCode(status: WaitStatus): number | undefined {
  return status.kind === "exited" ? status.code : undefined;
}

/** Options of {@link assertChecksPassed}. */
export interface ChecksOptions {
  /**
   * Which report to look at, counting PASS/FAIL verdict lines from 1: a
   * target restored twice from one image reports once per run.
   */
  run?: number;
  /** What is being checked, put in front of every failure message. */
  what?: string;
}

/**
 * Asserts that the target printed no failure at all (no line with FAIL
 * in it: no failed check, no FAIL verdict), that its `run`-th report has a
 * "check <name> ok" line for every one of `names` and ends in PASS, and
 * that it exited with code 0 (`status` is its wait status).
 */
export function assertChecksPassed(
  t: Target,
  names: readonly string[],
  status: WaitStatus,
  { run = 1, what = "target" }: ChecksOptions = {},
): void {
  const out = t.output();
  const failed = out.split("\n").filter((l) => l.includes("FAIL"));
  assert.deepEqual(failed, [], `${what} reported failures:\n${out}`);
  const reports = out.split(/^(?:PASS|FAIL)$/m);
  assert.ok(
    reports.length > run,
    `${what}: report ${run} missing (wait status ${JSON.stringify(status)}) in:\n${out}`,
  );
  const report = reports[run - 1];
  for (const name of names) {
    assert.match(
      report,
      new RegExp(`^check ${name} ok$`, "m"),
      `${what}: no "check ${name} ok" in report ${run} of:\n${out}`,
    );
  }
  const verdicts = out.match(/^(PASS|FAIL)$/gm) ?? [];
  assert.equal(verdicts[run - 1], "PASS", `${what}:\n${out}`);
  assert.equal(exitCode(status), 0, `${what}: exit status ${JSON.stringify(status)}\n${out}`);
}

/** The `key=value` lines the target printed so far (`key` a word; a later line wins). */
export function targetFacts(t: Target): Record<string, string> {
  const facts: Record<string, string> = {};
  for (const [, key, value] of t.output().matchAll(/^(\w+)=(.*)$/gm)) facts[key] = value;
  return facts;
}

/** The fact `key` as a string; asserts the target reported it. */
function fact(facts: Record<string, string>, key: string): string {
  const value = facts[key];
  assert.ok(value !== undefined, `the target did not report ${key}`);
  return value;
}

/** The fact `key` as a number (decimal or `0x` hex). */
export function factNumber(facts: Record<string, string>, key: string): number {
  return Number(fact(facts, key));
}

/** The fact `key` as a bigint (decimal or `0x` hex), for addresses and 64-bit values. */
export function factBigInt(facts: Record<string, string>, key: string): bigint {
  return BigInt(fact(facts, key));
}

/** The checks tests/targets/rt_regs.c always reports (registers, FPU, TLS, masks). */
export const RT_REGS_CHECKS: readonly string[] = [
  "gpr",
  "rsp",
  "eflags-df-ac",
  "x87-control-word",
  "x87-top-tags",
  "x87-stack",
  "mxcsr",
  "xmm",
  "ymm-upper",
  "fs-base",
  "gs-base",
  "tls",
  "mask-words",
];

/**
 * The ready line of tests/targets/rt_cow.c: its pid, its child's, the
 * shared region's address and pages, the file mapping's address.
 */
export const RT_COW_READY =
  /^ready pid=(\d+) child=(\d+) region=0x([0-9a-f]+) pages=(\d+) file=0x([0-9a-f]+)$/m;

/** The checks tests/targets/rt_cow.c reports (the parent's, then its child's). */
export const RT_COW_CHECKS: readonly string[] = [
  "maps",
  "child-maps",
  "region",
  "heap",
  "kept",
  "file",
  "child-region",
  "child-heap",
  "child-own",
  "child-unmapped",
  "child-file",
  "child",
];

/**
 * Sends SIGUSR1 (a restored target's "check yourself now"), waits for the
 * target, and asserts that it exited after printing PASS.
 */
export async function signalThenPass(t: Target): Promise<void> {
  t.signal(SIGUSR1);
  const st = await t.wait();
  assert.equal(st.kind, "exited", t.output());
  assert.match(t.output(), /^PASS$/m, t.output());
}
