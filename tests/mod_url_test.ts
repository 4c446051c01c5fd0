/**
 * mod.ts (and the CLI) must work when imported by URL from a project with
 * no deno.json: the repository is served over HTTP on 127.0.0.1 and a
 * script in an empty temporary directory imports it and calls real code.
 *
 * @module
 */

import assert from "node:assert/strict";
import { repoRoot, runDeno } from "./helpers/commands.ts";
import { withTempDir } from "./helpers/fs.ts";
import { serveRepository } from "./helpers/serve.ts";

const version = JSON.parse(Deno.readTextFileSync(`${repoRoot}deno.json`)).version as string;

Deno.test("mod.ts imported by URL from a directory without deno.json", async () => {
  const served = new Set<string>();
  await using server = serveRepository(served);
  await withTempDir("cryo-url-", async (dir) => {
    const base = `http://127.0.0.1:${server.addr.port}`;
    await Deno.writeTextFile(
      `${dir}/use_cryo.ts`,
      `const m = await import("${base}/mod.ts");
const report = m.checkHost();
console.log(JSON.stringify({
  version: m.VERSION,
  formatVersion: m.IMAGE_FORMAT_VERSION,
  ready: report.ready,
  features: report.rows.map((r) => r.feature),
}));
`,
    );
    // Deno caches by origin and ports get reused: fetch from this server again.
    const reload = `--reload=${base}`;
    const r = await runDeno(dir, [reload, "use_cryo.ts"]);
    assert.equal(r.code, 0, r.stderr);
    const got = JSON.parse(r.stdout.trim().split("\n").at(-1)!);
    assert.equal(got.version, version);
    assert.equal(typeof got.formatVersion, "number");
    assert.equal(got.ready, true);
    assert.ok(got.features.includes("clone3 set_tid"));
    for (const p of ["/mod.ts", "/engine/version.ts", "/engine/check.ts", "/ffi/libc.ts"]) {
      assert.ok(served.has(p), `${p} was not fetched over HTTP`);
    }

    // The CLI's npm: dependencies resolve by URL too (a command's help loads the program;
    // the top-level help is answered without it).
    const help = await runDeno(dir, [reload, `${base}/cli.ts`, "--help"]);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /^Usage: cryo /);
    assert.match(help.stdout, /export-core/);
    const dumpHelp = await runDeno(dir, [reload, `${base}/cli.ts`, "dump", "--help"]);
    assert.equal(dumpHelp.code, 0, dumpHelp.stderr);
    assert.match(dumpHelp.stdout, /^Usage: cryo dump /);
    assert.match(dumpHelp.stdout, /--no-sync/);
    assert.ok(served.has("/cli/program.ts"));
    assert.ok(served.has("/cli/dump.ts"));
    const ver = await runDeno(dir, [`${base}/cli.ts`, "--version"]);
    assert.equal(ver.stdout.trim(), version);
  });
});
