/**
 * Test helper serving the repository over HTTP, so that tests can import
 * mod.ts (or run cli.ts) by URL from a directory without deno.json.
 *
 * @module
 */

import { extname, normalize } from "node:path";
import { repoRoot } from "./commands.ts";

const TYPES: Record<string, string> = {
  ".ts": "application/typescript; charset=utf-8",
  ".js": "application/javascript; charset=utf-8",
  ".json": "application/json; charset=utf-8",
};

/**
 * Serves the files under the repository root, read-only, on an ephemeral
 * 127.0.0.1 port, adding every path asked for to `served`. Stop it with
 * `shutdown()`.
 */
export function serveRepository(served: Set<string>): Deno.HttpServer<Deno.NetAddr> {
  const root = normalize(repoRoot);
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
