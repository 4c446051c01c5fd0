/**
 * engine/proc/io.ts `readProcTextOnce` (the restore's status read-backs in
 * four system calls) gives exactly the text `readProcText` gives: a
 * thread's status, a text longer than its buffer (read again whole), and
 * the same typed error for a process that is gone.
 *
 * @module
 */

import assert from "node:assert/strict";
import { readProcText, readProcTextOnce } from "../engine/proc/io.ts";
import { ProcessGoneError } from "../engine/proc/errors.ts";

/** Runs `fn` with a sleeping child (its /proc files do not change while it sleeps). */
async function withSleeper(fn: (pid: number) => void): Promise<void> {
  const child = new Deno.Command("sleep", { args: ["30"], stdout: "null", stderr: "null" })
    .spawn();
  try {
    // Until it sleeps in its nanosleep (its status's State line says so).
    for (let i = 0; i < 200; i++) {
      if (/^State:\s+S/m.test(Deno.readTextFileSync(`/proc/${child.pid}/status`))) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    fn(child.pid);
  } finally {
    child.kill("SIGKILL");
    await child.status;
  }
}

Deno.test("a status read at once is the text readProcText reads, for the process and its thread", async () => {
  await withSleeper((pid) => {
    const once = readProcTextOnce(pid, "status");
    assert.match(once, /^Name:\tsleep\n/);
    assert.equal(once, readProcText(pid, "status"));
    assert.equal(readProcTextOnce(pid, "status", pid), readProcText(pid, "status", pid));
  });
});

Deno.test("a text longer than the one read's buffer comes back whole", async () => {
  await withSleeper((pid) => {
    const whole = readProcText(pid, "smaps");
    assert.ok(whole.length > 16384, `smaps of sleep: ${whole.length} bytes`);
    assert.equal(readProcTextOnce(pid, "smaps"), whole);
  });
});

Deno.test("a process that is gone: the same typed error as readProcText", async () => {
  const child = new Deno.Command("true").spawn();
  await child.status;
  assert.throws(() => readProcTextOnce(child.pid, "status"), ProcessGoneError);
  assert.throws(() => readProcText(child.pid, "status"), ProcessGoneError);
});
