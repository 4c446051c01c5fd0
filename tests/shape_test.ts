/**
 * engine/image/shape.ts (the image schemas' checker, in place of zod):
 * its checks and messages on small cases, and the same verdicts as zod on
 * hundreds of damaged copies of a real manifest and process description
 * (engine/image/schema.ts built once with each).
 */

import assert from "node:assert/strict";
import * as z from "../engine/image/shape.ts";
import {
  manifestSchema,
  mappingChecks,
  processImageSchema,
  schemaProblem,
  threadChecks,
} from "../engine/image/schema.ts";
import { plainMappingFits } from "../engine/image/mapping_fast.ts";
import { plainThreadFits } from "../engine/image/thread_fast.ts";
import { checkpoint } from "../engine/dump/mod.ts";
import { readImageFile } from "../engine/image/reader.ts";
import { mutateJson, Rng } from "../scripts/fuzz/mutate.ts";
import { tempDir } from "./helpers/fs.ts";
import { tempImageDir } from "./helpers/roundtrip.ts";
import { startTarget, withTargets } from "./helpers/targets.ts";

const problem = (s: z.ZodType, x: unknown) => schemaProblem(s, x);

Deno.test("shape: types, bounds, patterns, optional, nullable, unions, refinements", () => {
  const nat = z.number().int().nonnegative();
  assert.equal(problem(nat, 3), undefined);
  assert.match(problem(nat, -1)!, /^\(top\): Too small/);
  assert.match(problem(nat, 1.5)!, /expected int/);
  assert.match(problem(nat, "3")!, /expected number, received string/);
  assert.match(problem(nat, Number.MAX_SAFE_INTEGER + 2)!, /expected int/);
  assert.match(problem(z.number(), Infinity)!, /expected number/);
  const hex = z.string().regex(/^0x[0-9a-f]+$/, "expected hex");
  assert.equal(problem(hex, "0x1f"), undefined);
  assert.equal(problem(hex, "1f"), "(top): expected hex");
  assert.match(problem(z.string().max(2), "abc")!, /Too big/);
  const obj = z.looseObject({
    a: nat,
    b: z.array(hex).max(2).optional(),
    c: z.looseObject({ d: z.boolean() }).nullable(),
    e: z.union([nat, z.literal("inf")]),
    f: z.enum(["x", "y"]),
    g: z.tuple([nat, hex]),
    h: z.record(z.string(), nat),
  });
  const good = { a: 1, c: null, e: "inf", f: "y", g: [1, "0x2"], h: { k: 3 }, extra: [1] };
  assert.equal(problem(obj, good), undefined);
  assert.equal(problem(obj, { ...good, b: ["0x1", "0x2"], c: { d: true } }), undefined);
  assert.match(problem(obj, { ...good, b: ["0x1", "zz"] })!, /^b\.1: expected hex$/);
  assert.match(problem(obj, { ...good, b: ["0x1", "0x1", "0x1"] })!, /^b: Too big/);
  assert.match(problem(obj, { ...good, a: undefined })!, /^a: .*received undefined/);
  assert.match(problem(obj, { ...good, c: { d: 1 } })!, /^c\.d: /);
  assert.match(problem(obj, { ...good, e: -2 })!, /^e: Invalid input/);
  assert.match(problem(obj, { ...good, f: "z" })!, /^f: Invalid option/);
  assert.match(problem(obj, { ...good, g: [1] })!, /^g: Invalid length/);
  assert.match(problem(obj, { ...good, h: { k: -1 } })!, /^h\.k: Too small/);
  assert.match(problem(obj, [good])!, /^\(top\): .*expected object, received array/);
  assert.match(problem(obj, null)!, /received null/);
  const refined = z.looseObject({ n: nat, m: nat }).refine((v) => v.n <= v.m, {
    message: "n above m",
    path: ["n"],
  });
  assert.equal(problem(refined, { n: 1, m: 2 }), undefined);
  assert.equal(problem(refined, { n: 3, m: 2 }), "n: n above m");
  assert.match(problem(refined, { n: "3", m: 2 })!, /^n: .*expected number/); // shape first
  const sup = z.looseObject({ n: nat }).superRefine((v, ctx) => {
    if (v.n > 1) ctx.addIssue({ code: "custom", message: "first", path: ["n"] });
    if (v.n > 1) ctx.addIssue({ code: "custom", message: "second" });
  });
  assert.equal(problem(sup, { n: 1 }), undefined);
  assert.equal(problem(sup, { n: 2 }), "n: first");
  assert.match(problem(z.array(nat).length(4), [1, 2, 3])!, /Invalid length/);
  assert.match(problem(z.array(nat).min(1), [])!, /Too small/);
});

Deno.test("shape: lazy builds its shape at the first check, once, and checks the same", () => {
  let builds = 0;
  const inner = () =>
    z.looseObject({ a: z.array(z.number().int()).max(2), b: z.string().optional() });
  const lazy = z.lazy(() => (builds++, inner()));
  const wrapped = z.array(lazy.optional()).min(1);
  assert.equal(builds, 0, "nothing built when made or composed");
  const cases: unknown[] = [{ a: [1] }, { a: [1, 2, 3] }, { a: [1.5] }, { a: [], b: 3 }, null, "x"];
  for (const c of cases) {
    assert.equal(problem(lazy, c), problem(inner(), c), JSON.stringify(c));
    assert.equal(problem(wrapped, [c]), problem(z.array(inner().optional()).min(1), [c]));
  }
  assert.equal(problem(wrapped, []), problem(z.array(inner()).min(1), []));
  assert.equal(builds, 1, "built once");
});

/** engine/image/schema.ts built with zod instead of shape.ts (a copy in a temporary module). */
async function zodSchemas(): Promise<typeof import("../engine/image/schema.ts")> {
  const src = await Deno.readTextFile(new URL("../engine/image/schema.ts", import.meta.url));
  const swapped = src.replace(
    'import * as z from "./shape.ts";',
    'import { z } from "npm:zod@4.6.7";',
  ).replace(
    'import { MAPPING_KINDS, plainMappingFits } from "./mapping_fast.ts";\n',
    `import { MAPPING_KINDS } from "${
      new URL("../engine/image/mapping_fast.ts", import.meta.url).href
    }";\n`,
  )
    .replace('import { plainThreadFits } from "./thread_fast.ts";\n', "")
    .replace("mappingChecks.fastPath(plainMappingFits);", "mappingChecks;") // zod: the checks alone
    .replace("threadChecks.fastPath(plainThreadFits);", "threadChecks;");
  assert.ok(!swapped.includes("fastPath"), "every fast path removed from the zod copy");
  assert.notEqual(swapped, src, "schema.ts imports shape.ts as z");
  const dir = await tempDir("cryo-shape-");
  await Deno.writeTextFile(`${dir}/schema_zod.ts`, swapped);
  return await import(`file://${dir}/schema_zod.ts`);
}

Deno.test(
  "shape: same verdicts and paths as zod on damaged manifests and process descriptions",
  withTargets(async () => {
    const t = await startTarget("sleeper", ["600"]);
    await t.waitFor(/^ready pid=/m);
    const dir = await tempImageDir();
    await checkpoint(t.pid, { dir });
    await t.wait();
    const manifest = JSON.parse(await Deno.readTextFile(`${dir}/manifest.json`));
    const info = await readImageFile(`${dir}/${t.pid}.elf`);
    const zod = await zodSchemas();
    const cases: [string, z.ZodType, unknown, unknown][] = [
      ["manifest", manifestSchema, zod.manifestSchema, manifest],
      ["process", processImageSchema, zod.processImageSchema, info.process],
    ];
    const rng = new Rng(0x5a9e);
    let refused = 0;
    for (const [name, mine, theirs, doc] of cases) {
      assert.equal(schemaProblem(mine, doc), undefined, `${name} as written`);
      for (let i = 0; i < 400; i++) {
        const { doc: bad, what } = mutateJson(doc as never, rng);
        const a = schemaProblem(mine, bad);
        const b = zod.schemaProblem(theirs as never, bad);
        assert.equal(a === undefined, b === undefined, `${name}, ${what}: ${a} / zod: ${b}`);
        if (a && b) {
          assert.equal(a.split(": ")[0], b.split(": ")[0], `${name}, ${what}: same path`);
          refused++;
        }
      }
    }
    assert.ok(refused > 200, `${refused} refusals`);
  }),
);

Deno.test("shape: the mapping fast path accepts only what the mapping checks accept", () => {
  const anon = {
    start: "0x7f0000000000",
    end: "0x7f0000002000",
    perms: "rw-p",
    offset: "0x0",
    kind: "anon",
    name: "",
    vmFlags: ["rd", "wr", "mr", "mw", "me", "ac"],
    pages: [{ addr: "0x7f0000000000", length: 4096, fileOffset: 8192 }],
  };
  const file = {
    ...anon,
    kind: "file-private",
    name: "/lib/x.so",
    perms: "r-xs",
    offset: "0xABCdef0123456789",
    file: { path: "/lib/x.so", dev: 1, ino: 2, size: 3, mtimeMs: 4.5 },
    excluded: true,
    ghost: "g1",
    pages: [],
  };
  const check = (m: unknown) => schemaProblem(mappingChecks, m);
  assert.ok(plainMappingFits(anon));
  assert.equal(check(anon), undefined);
  assert.ok(!plainMappingFits(file), "a file identity goes the generic way");
  assert.equal(check(file), undefined);
  const rng = new Rng(0x3a9f);
  let accepted = 0, refused = 0;
  for (const base of [anon, file, { ...anon, pages: [] }, { ...anon, kind: "vdso" }]) {
    for (let i = 0; i < 3000; i++) {
      const { doc: bad } = mutateJson(base as never, rng);
      const fast = plainMappingFits(bad);
      const problem = check(bad);
      if (fast) {
        assert.equal(problem, undefined, `fast path accepted ${JSON.stringify(bad)}`);
        accepted++;
      } else if (problem) refused++;
    }
  }
  // Hex edge cases the pattern decides.
  for (
    const h of ["0x", "0X1", "0x1", "0xfffffffffffffffff", "0xffffffffffffffff", " 0x1", "0x1\n"]
  ) {
    const m = { ...anon, start: h };
    assert.equal(plainMappingFits(m), check(m) === undefined, h);
  }
  assert.ok(accepted > 100 && refused > 1000, `${accepted} accepted, ${refused} refused`);
});

Deno.test("shape: the thread fast path accepts only what the thread checks accept", () => {
  const regs: Record<string, string> = {};
  for (const r of ["r15", "rip", "eflags", "rsp", "fs_base", "orig_rax"]) regs[r] = "0x1f";
  const plain = {
    tid: 12,
    comm: "worker",
    regs,
    xsave: "AAAAAAAAAAAAAA==",
    sigmask: "0x0",
    pending: [],
    sigaltstack: { sp: "0x0", flags: 2, size: 0 },
    rseq: { addr: "0x7f0000001000", len: 32, sig: "0x53053053", flags: 0 },
    robustList: { head: "0x7f0000002000", len: 24 },
    clearChildTid: "0x7f0000003000",
    syscall: { nr: 230, restart: "restart" },
    sched: {
      policy: 0,
      flags: 0,
      priority: 0,
      nice: 0,
      runtime: "0",
      deadline: "0",
      period: "0",
      utilMin: 0,
      utilMax: 1024,
      cpus: [0, 1],
      timerSlackNs: 50000,
      ioprio: 0,
    },
    creds: {
      uid: [0, 0, 0, 0],
      gid: [0, 0, 0, 0],
      groups: [0, 4],
      capInh: "0x0",
      capPrm: "0x1ffffffffff",
      capEff: "0x1ffffffffff",
      capBnd: "0x1ffffffffff",
      capAmb: "0x0",
      securebits: 0,
      keepCaps: false,
      noNewPrivs: false,
    },
  };
  const pending = {
    ...plain,
    pending: [{ signo: 10, code: -6, raw: "CgAAAA==" }],
    rseq: null,
    sched: undefined,
    creds: undefined,
  };
  const check = (t: unknown) => schemaProblem(threadChecks, t);
  for (const t of [plain, pending]) {
    assert.ok(plainThreadFits(t));
    assert.equal(check(t), undefined);
  }
  const rng = new Rng(0x7e4d);
  let accepted = 0, refused = 0;
  for (const base of [plain, pending]) {
    for (let i = 0; i < 4000; i++) {
      const { doc: bad } = mutateJson(base as never, rng);
      const fast = plainThreadFits(bad);
      const problem = check(bad);
      if (fast) {
        assert.equal(problem, undefined, `fast path accepted ${JSON.stringify(bad)}`);
        accepted++;
      } else if (problem) refused++;
    }
  }
  // Edge cases the patterns and bounds decide.
  const edges: [string, unknown][] = [
    ["xsave", "AAA="],
    ["xsave", "AA=A"],
    ["xsave", "AAAA==="],
    ["xsave", "AAAA\n"],
    ["xsave", ""],
    ["sigmask", "0x"],
    ["sigmask", "0xfffffffffffffffff"],
    ["tid", Number.MAX_SAFE_INTEGER + 2],
    ["tid", -3],
    ["rseq", null],
    ["rseq", undefined],
    ["sched", undefined],
    ["sched", null],
    ["syscall", { nr: 0, restart: "never" }],
    ["pending", [{ signo: 65, code: 0, raw: "" }]],
    ["pending", [{ signo: 0, code: 0, raw: "" }]],
    ["creds", { ...plain.creds, uid: [0, 0, 0, 4294967295] }],
    ["creds", { ...plain.creds, gid: [0, 0, 0] }],
    ["creds", { ...plain.creds, groups: new Array(65537).fill(1) }],
    ["creds", { ...plain.creds, groups: new Array(65536).fill(1) }],
    ["sched", { ...plain.sched, timerSlackNs: Infinity }],
    ["sched", { ...plain.sched, timerSlackNs: 1.5 }],
    ["sched", { ...plain.sched, cpus: [-1] }],
    ["regs", { ...regs, rax: "1f" }],
    ["regs", []],
  ];
  for (const [key, value] of edges) {
    const t = { ...plain, [key]: value };
    assert.equal(plainThreadFits(t), check(t) === undefined, `${key}: ${JSON.stringify(value)}`);
  }
  assert.ok(accepted > 100 && refused > 1000, `${accepted} accepted, ${refused} refused`);
});
