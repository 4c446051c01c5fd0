/**
 * `cryo check [--json]`: what this host lets cryo do. Prints the probe
 * table (or JSON) and fails when a required feature is missing.
 *
 * @module
 */

import type { Command } from "npm:@commander-js/extra-typings@15.1.0";
import { checkHost, type CheckReport } from "../engine/check.ts";
import { CAPABILITY_NAMES } from "../engine/check.ts";
import { CommandFailedError } from "./errors.ts";
import { printJson } from "./format.ts";
import { renderTable, terminalColumns } from "./table.ts";

/** The status word of a row: ok, missing, or MISSING for a required feature. */
export function statusWord(row: { ok: boolean; required: boolean }): string {
  if (row.ok) return "ok";
  return row.required ? "MISSING" : "missing";
}

/** Effective capabilities in a short form ("all 41 but CAP_SYS_RESOURCE" when most are held). */
export function summarizeCapabilities(names: readonly string[]): string {
  if (names.length === 0) return "none";
  const held = new Set(names);
  const lacking = CAPABILITY_NAMES.filter((c) => !held.has(c));
  if (lacking.length === 0) return `all ${CAPABILITY_NAMES.length}`;
  if (lacking.length <= names.length / 4) {
    return `all ${CAPABILITY_NAMES.length} but ${lacking.join(", ")}`;
  }
  return names.join(", ");
}

/** The human-readable check report (`columns` wraps the table to a terminal width). */
export function renderCheckReport(report: CheckReport, columns?: number): string {
  const head = ["feature", "status", "detail", "enables"];
  const rows = report.rows.map((r) => [
    r.required ? `${r.feature} *` : r.feature,
    statusWord(r),
    r.detail,
    r.enables,
  ]);
  let widths: (number | null)[] | undefined;
  if (columns !== undefined && columns >= 80) {
    const rest = columns - 26 - 10 - 5; // feature and status columns, and 5 borders
    widths = [26, 10, Math.floor(rest * 0.6), rest - Math.floor(rest * 0.6)];
  }
  const missing = report.rows.filter((r) => r.required && !r.ok).map((r) => r.feature);
  const lines = [
    `Linux ${report.kernelRelease} ${report.arch}, uid ${report.uid}`,
    `effective capabilities: ${summarizeCapabilities(report.capabilities)}`,
    renderTable(head, rows, { widths }),
    "* required",
    "",
    missing.length === 0
      ? "cryo can checkpoint and restore on this host."
      : report.mode.kind === "launched"
      ? `cryo cannot work on host pids here: missing ${missing.join(", ")}.`
      : `cryo cannot work on this host: missing ${missing.join(", ")}.`,
    `mode: ${report.mode.kind}: ${report.mode.why}.`,
  ];
  if (report.limitations.length) {
    lines.push("", "Limits on this host:", ...report.limitations.map((l) => `  - ${l}`));
  }
  return lines.join("\n");
}

/** Registers `check` on the program. */
export function register(program: Command): void {
  program
    .command("check")
    .description("probe this host for the kernel features and privileges cryo needs")
    .option("--json", "print the report as JSON")
    .addHelpText(
      "after",
      `
Every probe is real: a short-lived /bin/sleep is traced, read and has
syscalls injected (then killed); the other probes are single calls.
Exits with 1 when a required feature (marked *) is missing.`,
    )
    .action((opts) => {
      const report = checkHost();
      if (opts.json) printJson(report);
      else console.log(renderCheckReport(report, terminalColumns()));
      const missing = report.rows.filter((r) => r.required && !r.ok).map((r) => r.feature);
      // Still a failure in "launched" mode: the mode line says what this user can do.
      if (missing.length) {
        throw new CommandFailedError(`required features missing: ${missing.join(", ")}`);
      }
    });
}
