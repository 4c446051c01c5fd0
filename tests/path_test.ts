/** engine/path.ts gives node:path's results. */

import assert from "node:assert/strict";
import * as node from "node:path";
import { basename, dirname, resolve } from "../engine/path.ts";

const SAMPLES = [
  "",
  "/",
  "//",
  "a",
  "a/",
  "/a",
  "/a/",
  "/a//b/",
  "a/b/c",
  "./a",
  "../a",
  "a/../..",
  "/../a",
  "/a/./b/../c",
  "..",
  ".",
  "a/b/../../..",
  "/tmp/cryo-x/image.partial-1",
  "///x///y",
  "x/.",
  ".hidden",
  "a.b/c.d",
];

Deno.test("path: dirname, basename and resolve agree with node:path", () => {
  for (const p of SAMPLES) {
    assert.equal(dirname(p), node.dirname(p), `dirname(${JSON.stringify(p)})`);
    assert.equal(basename(p), node.basename(p), `basename(${JSON.stringify(p)})`);
    assert.equal(resolve(p), node.resolve(p), `resolve(${JSON.stringify(p)})`);
    for (const q of SAMPLES) {
      assert.equal(resolve(p, q), node.resolve(p, q), `resolve(${p}, ${q})`);
    }
  }
  assert.equal(resolve(), node.resolve());
});
