/**
 * The command lines of `cryo dump` and `cryo restore` that need no help,
 * no error message and no option beyond the plain flags, parsed without
 * commander (cli/commander_lib.ts: loading it costs ~60 ms of CPU, the
 * Node compatibility layer). Anything else (a flag it does not know,
 * `--opt=value`, `--help`, `--debug`, `--`, a repeated option, a missing or
 * invalid argument, a value that starts with `-`) is left to commander,
 * which parses it, reports the error or prints the help exactly as before.
 * For what it accepts it gives the options commander would
 * (tests/cli_quick_test.ts compares the two on many command lines).
 *
 * @module
 */

/** How a quick command line is parsed. */
interface QuickSpec {
  /** The command module, relative to the repository (engine/modules.ts). */
  module: string;
  /** Options that take a value (the next word): flag -> key. */
  values: Readonly<Record<string, string>>;
  /** Options without a value: flag -> [key, value]. */
  flags: Readonly<Record<string, readonly [string, boolean]>>;
  /** The keys commander sets without the flag (a `--no-x` alone defaults x to true). */
  defaults: Readonly<Record<string, boolean>>;
  /** The keys that must be given. */
  required: readonly string[];
  /** The one argument, parsed; undefined when it is not valid (commander then reports it). */
  argument(text: string): number | string | undefined;
}

const OPT_INS = {
  "--ext-unix-sk": ["extUnixSk", true],
  "--tcp-established": ["tcpEstablished", true],
  "--shell-job": ["shellJob", true],
  "--tcp-close": ["tcpClose", true],
} as const;

/** As cli/format.ts's `positiveInt` accepts. */
function positiveInt(text: string): number | undefined {
  const n = Number(text);
  return /^[0-9]+$/.test(text) && Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

const SPECS: Readonly<Record<string, QuickSpec>> = {
  dump: {
    module: "cli/dump.ts",
    values: { "--dir": "dir", "--parent": "parent" },
    flags: {
      "--leave-running": ["leaveRunning", true],
      "--json": ["json", true],
      "--no-sync": ["sync", false],
      "--precopy": ["precopy", true],
      "--no-precopy": ["precopy", false],
      "--pre-dump": ["preDump", true],
      "--no-network-lock": ["networkLock", false],
      "--skip-in-flight": ["skipInFlight", true],
      ...OPT_INS,
    },
    defaults: { sync: true, networkLock: true },
    required: ["dir"],
    argument: positiveInt,
  },
  restore: {
    module: "cli/restore.ts",
    values: {},
    flags: {
      "--detach": ["detach", true],
      "--new-pid-ns": ["newPidNs", true],
      "--no-verify": ["verify", false],
      "--trust-image-owner": ["trustImageOwner", true],
      "--lazy": ["lazy", true],
      "--json": ["json", true],
      "--allow-clock-backwards": ["allowClockBackwards", true],
      "--new-audit-session": ["newAuditSession", true],
      ...OPT_INS,
    },
    defaults: { verify: true },
    required: [],
    argument: (text) => text === "" ? undefined : text,
  },
};

/** A command line parsed without commander. */
export interface QuickCommand {
  /** The command's name. */
  name: string;
  /** Its module (exports `run(argument, opts)`). */
  module: string;
  /** The parsed argument (dump: the pid; restore: the directory). */
  argument: number | string;
  /** The options, with the keys and values commander gives. */
  opts: Record<string, string | boolean>;
}

/** Parses `argv` (without the program name) if it is a plain dump or restore; else undefined. */
export function quickParse(argv: readonly string[]): QuickCommand | undefined {
  const name = argv[0];
  if (name === undefined || !Object.hasOwn(SPECS, name)) return undefined;
  const spec = SPECS[name];
  const opts: Record<string, string | boolean> = {};
  const given = new Set<string>();
  let argument: number | string | undefined;
  let words = 0;
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i];
    if (Object.hasOwn(spec.flags, a)) {
      const [key, value] = spec.flags[a];
      if (given.has(key)) return undefined;
      given.add(key);
      opts[key] = value;
    } else if (Object.hasOwn(spec.values, a)) {
      const key = spec.values[a];
      const value = argv[i + 1];
      if (given.has(key) || value === undefined || value === "" || value.startsWith("-")) {
        return undefined;
      }
      given.add(key);
      opts[key] = value;
      i++;
    } else if (a.startsWith("-") || ++words > 1) {
      return undefined;
    } else {
      argument = spec.argument(a);
      if (argument === undefined) return undefined;
    }
  }
  if (argument === undefined || spec.required.some((k) => !given.has(k))) return undefined;
  for (const [key, value] of Object.entries(spec.defaults)) if (!given.has(key)) opts[key] = value;
  return { name, module: spec.module, argument, opts };
}
