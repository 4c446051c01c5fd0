/**
 * A TCP socket with MD5 signature keys (TCP_MD5SIG, as BGP daemons use) is
 * refused at dump by name (the keys are not saved; before, the socket came
 * back without them, and the peer drops unsigned segments). The target goes
 * on untouched: its listener still accepts a client with the key
 * (tests/targets/rt_tcp_md5.c).
 */

import assert from "node:assert/strict";
import { assertChecksPassed } from "./helpers/checks.ts";
import { assertDumpRefused, startTriggered } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

Deno.test(
  "TCP MD5: a listener with a signature key is refused by name, the target untouched",
  withTargets(async () => {
    const rt = await startTriggered("rt_tcp_md5", /^ready pid=(\d+) port=(\d+)$/m);
    await assertDumpRefused(rt.t.pid, (items, message) => {
      assert.equal(items.length, 1, message);
      assert.match(
        items[0],
        new RegExp(
          `^process ${rt.t.pid} fd \\d+ \\(socket:\\[\\d+\\]\\): TCP sockets with MD5 signature keys .*: it has TCP MD5 signature keys \\(TCP_MD5SIG\\)$`,
        ),
      );
    });
    await Deno.writeTextFile(rt.trigger, "");
    assertChecksPassed(rt.t, ["md5-accepts"], await rt.t.wait());
  }),
);
