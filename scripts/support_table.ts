/**
 * Rewrites the restorability table in docs/ARCHITECTURE.md (between the
 * `<!-- support-table -->` markers) from engine/support.ts:
 * `deno task support-table`. tests/support_test.ts fails while they differ.
 *
 * @module
 */

import { supportTableMarkdown } from "../engine/support.ts";

const path = new URL("../docs/ARCHITECTURE.md", import.meta.url);
const doc = await Deno.readTextFile(path);
const next = doc.replace(
  /<!-- support-table -->[\s\S]*?<!-- \/support-table -->/,
  `<!-- support-table -->\n${supportTableMarkdown()}\n<!-- /support-table -->`,
);
if (next === doc && !doc.includes("<!-- support-table -->")) {
  throw new Error("docs/ARCHITECTURE.md has no <!-- support-table --> markers");
}
await Deno.writeTextFile(path, next);
