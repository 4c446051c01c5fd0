/**
 * tcpdump (Debian's package; skipped with a message when not installed)
 * capturing on lo through libpcap's mmapped ring, across dump, kill and
 * restore: in text mode (`-l -A`: a TPACKET_V3 ring) and writing a file
 * (`-w -U --immediate-mode`: a TPACKET_V2 ring). What was captured before
 * the dump is there once, what is sent after the restore is captured after
 * it, in order.
 */

import assert from "node:assert/strict";
import { dumpKillRestore } from "./helpers/roundtrip.ts";
import { startTarget, withTargets } from "./helpers/targets.ts";
import { tempDir } from "./helpers/fs.ts";
import { freePort, needProgram } from "./helpers/servers.ts";
import { runCommand } from "./helpers/commands.ts";
import { sleep, waitUntil } from "./helpers/wait.ts";

const tcpdump = needProgram("restore_tcpdump_test", "tcpdump", "tcpdump");
const enc = new TextEncoder();

/** A TCP connection on lo to a listener that reads and drops what comes. */
async function loopbackPair(
  port: number,
): Promise<{ send: (s: string) => Promise<void>; close: () => void }> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port });
  const client = await Deno.connect({ hostname: "127.0.0.1", port });
  const server = await listener.accept();
  const drain = (async () => {
    const buf = new Uint8Array(4096);
    try {
      while ((await server.read(buf)) !== null) { /* dropped */ }
    } catch { /* closed */ }
  })();
  return {
    send: async (s) => {
      await client.write(enc.encode(s));
      await sleep(30);
    },
    close: () => {
      client.close();
      try {
        server.close();
      } catch { /* closed */ }
      listener.close();
      void drain;
    },
  };
}

/** The `mark<N>` payloads in `text`, in order. */
function marks(text: string): string[] {
  return [...text.matchAll(/mark(\d\d)/g)].map((m) => m[1]);
}

Deno.test({
  name: "tcpdump -l -A on lo (a TPACKET_V3 ring) goes on capturing after restore",
  ignore: !tcpdump,
  fn: withTargets(async () => {
    const port = freePort();
    const pair = await loopbackPair(port);
    try {
      const t = await startTarget(tcpdump!, ["-i", "lo", "-n", "-l", "-A", `tcp dst port ${port}`]);
      await t.waitFor(/listening on lo/);
      await sleep(300);
      for (let i = 0; i < 3; i++) await pair.send(`mark0${i}`);
      await waitUntil("the first packets printed", () => marks(t.output()).length === 3);
      await dumpKillRestore(t);
      for (let i = 3; i < 6; i++) await pair.send(`mark0${i}`);
      // V3 hands a block over at its timeout (tcpdump: 1 s).
      await waitUntil("the packets sent after restore", () => marks(t.output()).length >= 6);
      assert.deepEqual(marks(t.output()), ["00", "01", "02", "03", "04", "05"], t.output());
      assert.equal(t.poll(), undefined, "tcpdump died");
    } finally {
      pair.close();
    }
  }),
});

Deno.test({
  name: "tcpdump -w -U --immediate-mode on lo (a TPACKET_V2 ring) goes on capturing after restore",
  ignore: !tcpdump,
  fn: withTargets(async () => {
    const port = freePort();
    const work = await tempDir("cryo-tcpdump-");
    const file = `${work}/cap.pcap`;
    const pair = await loopbackPair(port);
    try {
      const t = await startTarget(tcpdump!, [
        "-i",
        "lo",
        "-n",
        "-U",
        "--immediate-mode",
        "-Z",
        "root",
        "-w",
        file,
        `tcp dst port ${port}`,
      ]);
      await t.waitFor(/listening on lo/);
      await sleep(300);
      // More packets than the ring has frames before the dump: the kernel's position is not 0.
      for (let i = 0; i < 40; i++) await pair.send(`mark${String(i).padStart(2, "0")}`);
      const read = async () => (await runCommand([tcpdump!, "-r", file, "-A", "-n"])).stdout;
      await waitUntil("the first packets written", async () => marks(await read()).length === 40);
      await dumpKillRestore(t);
      for (let i = 40; i < 50; i++) await pair.send(`mark${i}`);
      await waitUntil(
        "the packets sent after restore",
        async () => marks(await read()).length >= 50,
      );
      const got = marks(await read());
      assert.deepEqual(got, Array.from({ length: 50 }, (_, i) => String(i).padStart(2, "0")));
      t.signal(2);
      const st = await t.wait();
      assert.ok(st.kind === "exited" && st.code === 0, `tcpdump's exit: ${JSON.stringify(st)}`);
      assert.match(t.output(), /packets captured/);
    } finally {
      pair.close();
    }
  }),
});

Deno.test({
  name:
    "tcpdump -w on lo (a TPACKET_V3 ring, the file buffered), packets in the block being filled at the dump: every one written in order at its exit after restore",
  ignore: !tcpdump,
  fn: withTargets(async () => {
    const port = freePort();
    const work = await tempDir("cryo-tcpdump-");
    const file = `${work}/cap.pcap`;
    const pair = await loopbackPair(port);
    try {
      const t = await startTarget(tcpdump!, ["-i", "lo", "-n", "-w", file, `tcp dst port ${port}`]);
      await t.waitFor(/listening on lo/);
      await sleep(300);
      for (let i = 0; i < 10; i++) await pair.send(`mark0${i}`);
      // In the block the kernel is filling at the freeze: the dump waits for it to be handed over.
      await dumpKillRestore(t);
      for (let i = 10; i < 20; i++) await pair.send(`mark${i}`);
      await sleep(1500);
      t.signal(2);
      const st = await t.wait();
      assert.ok(st.kind === "exited" && st.code === 0, `tcpdump's exit: ${JSON.stringify(st)}`);
      const text = (await runCommand([tcpdump!, "-r", file, "-A", "-n"])).stdout;
      assert.deepEqual(
        marks(text),
        Array.from({ length: 20 }, (_, i) => String(i).padStart(2, "0")),
      );
    } finally {
      pair.close();
    }
  }),
});
