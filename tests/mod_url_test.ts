/**
 * mod.ts (and the CLI) must work when imported by URL from a project with
 * no deno.json: the repository is served over HTTP on 127.0.0.1 and a
 * script in an empty temporary directory imports it and calls real code.
 *
 * @module
 */

import assert from "node:assert/strict";
import { extname, normalize } from "node:path";

const root = normalize(new URL("../", import.meta.url).pathname);
const version = JSON.parse(Deno.readTextFileSync(`${root}deno.json`)).version as string;

const TYPES: Record<string, string> = {
  ".ts": "application/typescript; charset=utf-8",
  ".js": "application/javascript; charset=utf-8",
  ".json": "application/json; charset=utf-8",
};

/** Paths the server was asked for. */
const served = new Set<string>();

/** Serves files under the repository root, read-only, on an ephemeral loopback port. */
function serveRepository(): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const urlPath = decodeURIComponent(new URL(req.url).pathname);
    served.add(urlPath);
    const path = normalize(`${root}${urlPath}`);
    if (!path.startsWith(root)) return new Response("outside the repository", { status: 403 });
    try {
      const body = await Deno.readFile(path);
      const type = TYPES[extname(path)] ?? "application/octet-stream";
      return new Response(body, { headers: { "content-type": type } });
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
}

async function denoRun(cwd: string, args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...args],
    cwd,
    stdin: "null",
    env: { NO_COLOR: "1" },
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("mod.ts imported by URL from a directory without deno.json", async () => {
  const server = serveRepository();
  const dir = await Deno.makeTempDir({ prefix: "cryo-url-" });
  try {
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
    const r = await denoRun(dir, ["use_cryo.ts"]);
    assert.equal(r.code, 0, r.stderr);
    const got = JSON.parse(r.stdout.trim().split("\n").at(-1)!);
    assert.equal(got.version, version);
    assert.equal(typeof got.formatVersion, "number");
    assert.equal(got.ready, true);
    assert.ok(got.features.includes("clone3 set_tid"));
    for (const p of ["/mod.ts", "/engine/version.ts", "/engine/check.ts", "/ffi/libc.ts"]) {
      assert.ok(served.has(p), `${p} was not fetched over HTTP`);
    }

    // The CLI's npm: dependencies resolve by URL too.
    const help = await denoRun(dir, [`${base}/cli.ts`, "--help"]);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /^Usage: cryo /);
    assert.match(help.stdout, /export-core/);
    assert.ok(served.has("/cli/program.ts"));
    const ver = await denoRun(dir, [`${base}/cli.ts`, "--version"]);
    assert.equal(ver.stdout.trim(), version);
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});
