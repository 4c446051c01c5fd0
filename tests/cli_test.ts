/**
 * Tests of the command line: `cli.ts` run as a subprocess (help, usage
 * errors and their exit codes, `check --json`, `check` with capabilities
 * dropped), and the presentation and error helpers of cli/ in process.
 *
 * @module
 */

import assert from "node:assert/strict";
import { describeError, EXIT_FAILURE, EXIT_USAGE, reportError } from "../cli/errors.ts";
import { humanBytes, humanDuration, positiveInt, toJson } from "../cli/format.ts";
import { loadCommander } from "../cli/commander_lib.ts";
import { renderTable } from "../cli/table.ts";
import { SyscallError } from "../ffi/libc.ts";
import { assertOneLineError, runCli } from "./helpers/commands.ts";
import { pathExists } from "./helpers/fs.ts";

/** The names in the "Commands:" section of a help text. */
function commandsOf(help: string): string[] {
  const section = help.split(/^Commands:$/m)[1] ?? "";
  return [...section.matchAll(/^ {2}([a-z][a-z-]*)/gm)].map((m) => m[1]);
}

Deno.test("cli: --help lists every command and exits 0", async () => {
  const r = await runCli(["--help"]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(commandsOf(r.stdout), [
    "check",
    "dump",
    "restore",
    "launch",
    "show",
    "pre-dump",
    "image",
    "migrate",
    "receive",
    "export-core",
    "run",
  ]);
  assert.match(r.stdout, /--debug/);
});

Deno.test("cli: each command's --help shows its options", async () => {
  const expect: Record<string, string[]> = {
    check: ["--json"],
    dump: ["<pid>", "--dir <dir>", "--leave-running", "--json"],
    restore: ["<dir>", "--detach", "--inherit-fd <spec...>", "--json"],
    show: ["<image>", "--json", "--plan"],
    "export-core": ["<dir>", "--pid <pid>", "--out <file>"],
    run: ["<policy>"],
    migrate: ["<pid>", "--to <host:port>", "--key-file <file>", "--rounds <n>"],
    receive: ["--listen <[addr:]port>", "--dir <dir>", "--key-file <file>", "--lazy"],
  };
  const runs = await Promise.all(Object.keys(expect).map((c) => runCli([c, "--help"])));
  Object.entries(expect).forEach(([command, options], i) => {
    assert.equal(runs[i].code, 0, `${command}: ${runs[i].stderr}`);
    assert.match(runs[i].stdout, new RegExp(`^Usage: cryo ${command}`));
    for (const o of options) assert.ok(runs[i].stdout.includes(o), `${command} --help lacks ${o}`);
  });
});

Deno.test("cli: usage errors are one line on stderr and exit 2", async () => {
  const cases: [string[], RegExp][] = [
    [["frobnicate"], /^cryo: unknown command 'frobnicate'$/],
    [["chek"], /^cryo: unknown command 'chek' \(Did you mean check\?\)$/],
    [["dump", "12"], /^cryo: required option '--dir <dir>' not specified$/],
    [["dump", "12abc", "--dir", "/tmp/x"], /^cryo: .*pid must be a positive integer/],
    [["check", "--bogus"], /^cryo: unknown option '--bogus'$/],
    [["migrate", "12"], /^cryo: required option '--to <host:port>' not specified$/],
    [
      ["receive", "--dir", "/tmp/x"],
      /^cryo: required option '--listen <\[addr:\]port>' not specified$/,
    ],
  ];
  const runs = await Promise.all(cases.map(([args]) => runCli(args)));
  cases.forEach(([args, re], i) => assertOneLineError(runs[i], 2, re, args.join(" ")));
});

Deno.test("cli: no command prints help on stderr and exits 2", async () => {
  const r = await runCli([]);
  assert.equal(r.code, 2);
  assert.deepEqual(commandsOf(r.stderr).length, 11);
});

Deno.test("cli: check --json prints the report and exits 0 here", async () => {
  const r = await runCli(["check", "--json"]);
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  assert.equal(report.ready, true);
  assert.ok(report.rows.length >= 15);
  for (const row of report.rows) {
    assert.deepEqual(Object.keys(row).sort(), ["detail", "enables", "feature", "ok", "required"]);
  }
  assert.ok(report.rows.some((x: { feature: string }) => x.feature === "clone3 set_tid"));
});

Deno.test("cli: check prints a table and the host's limits", async () => {
  const r = await runCli(["check"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /│ feature\s+│ status\s+│ detail\s+│ enables\s+│/);
  assert.match(r.stdout, /│ ptrace seize\/interrupt \* +│ ok /);
  assert.match(r.stdout, /cryo can checkpoint and restore on this host\./);
});

Deno.test({
  name: "cli: check without CAP_SYS_ADMIN/CAP_CHECKPOINT_RESTORE fails on clone3 set_tid",
  ignore: !pathExists("/usr/bin/setpriv"),
  fn: async () => {
    const r = await runCli(["check", "--json"], {
      wrapper: ["/usr/bin/setpriv", "--bounding-set=-sys_admin,-checkpoint_restore"],
    });
    assert.equal(r.code, EXIT_FAILURE, r.stderr);
    assert.equal(r.stderr, "cryo: required features missing: clone3 set_tid\n");
    const report = JSON.parse(r.stdout);
    assert.equal(report.ready, false);
    const row = report.rows.find((x: { feature: string }) => x.feature === "clone3 set_tid");
    assert.equal(row.ok, false);
    assert.match(row.detail, /^EPERM/);
    assert.ok(
      report.limitations.includes(
        "without CAP_CHECKPOINT_RESTORE/CAP_SYS_ADMIN: same pids can't be restored",
      ),
      report.limitations.join("\n"),
    );
  },
});

Deno.test("cli errors: one line naming the call and errno, usage errors exit 2", () => {
  const e = new SyscallError("ptrace(PTRACE_SEIZE)", [1234], 1);
  assert.equal(
    describeError(e),
    "ptrace(PTRACE_SEIZE)(1234) failed: EPERM (operation not permitted)",
  );
  assert.equal(
    describeError(new Error("first\nsecond", { cause: new Error("root") })),
    "first second (caused by: root)",
  );
  assert.equal(describeError("plain"), "plain");
  const logged: string[] = [];
  const orig = console.error;
  console.error = (...a: unknown[]) => logged.push(a.join(" "));
  try {
    assert.equal(reportError(e, false), EXIT_FAILURE);
    assert.deepEqual(logged, [
      "cryo: ptrace(PTRACE_SEIZE)(1234) failed: EPERM (operation not permitted)",
    ]);
    logged.length = 0;
    assert.equal(reportError(new Error("boom"), true), EXIT_FAILURE);
    assert.equal(logged[0], "cryo: boom");
    assert.match(logged[1], /^Error: boom\n\s+at /);
  } finally {
    console.error = orig;
  }
  assert.equal(EXIT_USAGE, 2);
});

Deno.test("cli format: sizes, durations, JSON, tables, pid parsing", async () => {
  await loadCommander(); // positiveInt is commander's argument parser: it runs once commander is loaded
  assert.equal(humanBytes(0), "0 B");
  assert.equal(humanBytes(4096), "4 KiB");
  assert.equal(humanBytes(1536 * 1024), "1.5 MiB");
  assert.equal(humanBytes(5n * 1024n ** 3n), "5 GiB");
  assert.equal(humanDuration(0.0004), "400 µs");
  assert.equal(humanDuration(0.012), "12 ms");
  assert.equal(humanDuration(2.44), "2.4 s");
  assert.equal(humanDuration(185), "3 min 5 s");
  assert.equal(humanDuration(7440), "2 h 4 min");
  assert.equal(toJson({ a: 255n }), '{\n  "a": "0xff"\n}');
  const t = renderTable(["a", "bb"], [["1", "2"], ["333", "4"]]).split("\n");
  assert.equal(t.length, 5);
  assert.equal(t[1], "│ a   │ bb │");
  assert.equal(t[3], "│ 333 │ 4  │");
  assert.equal(positiveInt("pid")("42"), 42);
  for (const bad of ["0", "-1", "1.5", "x", ""]) {
    assert.throws(() => positiveInt("pid")(bad), /pid must be a positive integer/);
  }
});

Deno.test("cli: the fast-path help is commander's, and every command's summary its own", async () => {
  const { buildProgram, COMMANDS } = await import("../cli/program.ts");
  const { TOP_HELP } = await import("../cli/fast.ts");
  let out = "";
  const program = await buildProgram();
  program.configureOutput({ writeOut: (s) => out += s, getOutHelpWidth: () => 80 });
  program.outputHelp();
  assert.equal(out, TOP_HELP);
  for (const c of COMMANDS) {
    const sub = program.commands.find((x) => x.name() === c.name);
    assert.equal(sub?.description(), c.summary, c.name);
  }
});

Deno.test("cli: --version and --help answer without loading the program", async () => {
  const [v, h] = await Promise.all([runCli(["--version"]), runCli(["-h"])]);
  assert.equal(v.code, 0);
  assert.match(v.stdout, /^\d+\.\d+\.\d+\n$/);
  assert.equal(h.code, 0);
  assert.equal(commandsOf(h.stdout).length, 11);
});
