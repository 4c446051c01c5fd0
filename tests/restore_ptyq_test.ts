/**
 * Bytes waiting in pseudo-terminals of the tree (tests/targets/rt_ptyq.c):
 * input the slave has not read — non-canonical bytes, and canonical lines
 * with their boundaries plus a partial line — and output the master has
 * not read (more than the master's line discipline holds, and echoes) come
 * back exactly, unprocessed a second time, with the same termios and
 * packet mode, after dump, kill and restore, and for a target
 * left running. Refused by name, the target running on untouched: a
 * packet-mode status byte not read yet, stopped output, a slave never opened.
 * And the canonical rebuild itself: terminators kept, inner special bytes
 * escaped, EOF-ended lines given an EOF again; the image record round-trips.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { UnsupportedError } from "../engine/errors.ts";
import { canonicalFill, decodePtyQueue, encodePtyQueue } from "../engine/fds/tty_queue.ts";
import { ImageFormatError } from "../engine/image/errors.ts";
import { decodeTermios2, LFLAG, VCC } from "../ffi/pty_queue.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { pathExists } from "./helpers/fs.ts";
import { dumpKillRestore, tempImageDir } from "./helpers/roundtrip.ts";
import { SIGUSR1 } from "./helpers/signals.ts";
import { startTarget, withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+)$/m;
const CHECKS = [
  "termios-a",
  "termios-b",
  "packet-b",
  "a-input",
  "a-input-end",
  "a-output",
  "a-output-end",
  "b-line-nl",
  "b-line-literal",
  "b-line-eof",
  "b-line-empty-eof",
  "b-line-eol",
  "b-partial-pending",
  "b-partial",
  "b-output",
  "b-output-end",
  "termios-c",
  "c-line",
  "c-input-end",
  "c-echo",
  "c-echo-end",
];

Deno.test(
  "ptyq: queued input (raw bytes, canonical lines, a partial line) and output come back exactly",
  withTargets(async () => {
    const t = await startTarget("rt_ptyq", ["queues"]);
    await t.waitFor(READY);
    const { dump } = await dumpKillRestore(t);
    const masters = dump.manifest.processes.length;
    assert.equal(masters, 1);
    t.signal(SIGUSR1);
    assertChecksPassed(t, CHECKS, await t.wait(), { what: "restored" });
  }),
);

Deno.test(
  "ptyq: a target left running finds the same bytes and termios after the dump",
  withTargets(async () => {
    const t = await startTarget("rt_ptyq", ["queues"]);
    await t.waitFor(READY);
    await checkpoint(t.pid, { dir: await tempImageDir(), leaveRunning: true });
    t.signal(SIGUSR1);
    assertChecksPassed(t, CHECKS, await t.wait(), { what: "left running" });
  }),
);

const REFUSED: [mode: string, message: RegExp, checks: string[]][] = [
  ["pktstatus", /fd 3 .*packet mode with a status byte/, ["status-byte"]],
  ["stopped", /fd 3 .*output is stopped/, ["master-empty", "output-after"]],
  ["unopened", /fd 3 .*slave no process ever opened/, ["no-hangup", "input-kept"]],
];

for (const [mode, message, checks] of REFUSED) {
  Deno.test(
    `ptyq: refused (${mode}), the target runs on untouched`,
    withTargets(async () => {
      const t = await startTarget("rt_ptyq", [mode]);
      await t.waitFor(READY);
      const dir = await tempImageDir();
      await assert.rejects(
        () => checkpoint(t.pid, { dir }),
        (e: unknown) => e instanceof UnsupportedError && message.test(e.message),
      );
      assert.equal(pathExists(dir), false);
      assert.equal(t.poll(), undefined, "still running");
      t.signal(SIGUSR1);
      assertChecksPassed(t, checks, await t.wait(), { what: "after the refusal" });
    }),
  );
}

Deno.test("ptyq: canonical lines are rebuilt with their terminators, inner specials escaped", () => {
  const enc = (s: string) => new TextEncoder().encode(s);
  const t = decodeTermios2(new Uint8Array(44));
  t.lflag = LFLAG.ICANON | LFLAG.IEXTEN | LFLAG.ECHO;
  t.cc[VCC.VEOL] = ";".charCodeAt(0);
  t.cc[VCC.VEOL2] = 0x04; // the usual EOF byte is an EOL2 here: EOF takes another
  const fill = canonicalFill(t, [enc("a\nb\n"), enc("c;"), enc("x"), enc("")], enc("p\x16q\x04"));
  const eof = fill.termios.cc[VCC.VEOF];
  const lnext = fill.termios.cc[VCC.VLNEXT];
  assert.deepEqual([eof, lnext], [0x16, 0x01]);
  assert.equal(fill.termios.lflag, LFLAG.ICANON | LFLAG.IEXTEN, "no echo, no signals");
  assert.equal(fill.termios.iflag, 0);
  assert.deepEqual(
    [...fill.bytes],
    [
      ...enc("a"),
      lnext,
      ...enc("\nb\n"),
      ...enc("c;"),
      ...enc("x"),
      eof,
      eof,
      ...enc("p"),
      lnext,
      0x16,
      ...enc("q"),
      lnext,
      0x04,
    ],
  );
  const q = { canonical: true, lines: [enc("l\n"), enc("")], partial: enc("p"), output: enc("o") };
  assert.deepEqual(decodePtyQueue(encodePtyQueue(q)), q);
  assert.throws(() => decodePtyQueue('{"canonical":1}'), ImageFormatError);
});
