/**
 * The network lock (engine/fds/tcp_lock.ts): a dump that kills a tree with a
 * TCP connection to a peer outside it drops that connection's incoming
 * segments until the restore, so a peer that sends while the tree is down
 * is not reset: its segment is sent again and answered by the restored
 * process (tests/targets/rt_tcp_lock.c). Without the lock the same peer is
 * reset (the case the lock exists for). Also: the lock is lifted by the
 * restore, by a dump that fails, and by `cryo image unlock`; the program's
 * UAPI numbers are the running kernel's.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { restore } from "../engine/restore/mod.ts";
import { isLocked, lockDir, probeNetworkLock, unlockConnections } from "../engine/fds/tcp_lock.ts";
import { Btf } from "../ffi/btf.ts";
import { BPF_CMD } from "../ffi/bpf.ts";
import {
  BPF_PROG_TYPE_SCHED_CLS,
  BPF_TCX_INGRESS,
  SKB_LOAD_BYTES_RELATIVE,
  TCX,
} from "../ffi/tcp_lock.ts";
import { tempImageDir } from "./helpers/roundtrip.ts";
import { adoptPid, startTarget, type Target, withTargets } from "./helpers/targets.ts";
import { runCli } from "./helpers/commands.ts";

const OPT_INS = ["tcp-established"];
const enc = new TextEncoder();

/** Reads until `text` ends a line, or rejects after `ms` (closing nothing: the caller does). */
async function readLine(conn: Deno.Conn, ms: number): Promise<string> {
  const buf = new Uint8Array(256);
  let text = "";
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no line within ${ms} ms, got ${text}`)), ms);
  });
  try {
    while (!text.endsWith("\n")) {
      const n = await Promise.race([conn.read(buf), timeout]);
      if (n === null) throw new Error(`connection closed, got ${JSON.stringify(text)}`);
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
    return text;
  } finally {
    clearTimeout(timer);
  }
}

/** The target connected to this test: its pid, our end of the connection, one exchange done. */
async function connected(): Promise<{ t: Target; conn: Deno.TcpConn; close: () => void }> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const t = await startTarget("rt_tcp_lock", [String(listener.addr.port)]);
    const conn = await listener.accept();
    await t.waitFor(/^ready pid=\d+$/m);
    await conn.write(enc.encode("one\n"));
    assert.equal(await readLine(conn, 5000), "ack:one\n");
    return { t, conn, close: () => conn.close() };
  } finally {
    listener.close();
  }
}

Deno.test(
  "network lock: a peer sending between the dump and the restore is answered after the restore, not reset",
  withTargets(async () => {
    const { t, conn, close } = await connected();
    let dumpId: string | undefined;
    try {
      const dir = await tempImageDir();
      const dump = await checkpoint(t.pid, { dir, optIns: OPT_INS });
      dumpId = dump.manifest.dumpId!;
      await t.wait();
      assert.deepEqual(dump.networkLock, { connections: 1, dir: lockDir(dumpId) });
      assert.ok(isLocked(dumpId));
      // One pin per network device.
      const pins = [...Deno.readDirSync(lockDir(dumpId))].map((e) => e.name).sort();
      assert.deepEqual(pins, [...Deno.readDirSync("/sys/class/net")].map((e) => e.name).sort());
      // The tree is down: this segment would be answered with a reset without the lock.
      await conn.write(enc.encode("two\n"));
      await new Promise((r) => setTimeout(r, 700));
      const tree = await restore(dir, { optIns: OPT_INS });
      t.resetAfterRestore();
      for (const pid of tree.pids) if (pid !== t.pid) adoptPid(pid);
      assert.equal(isLocked(dumpId), false, "the restore lifts the lock");
      // Sent again by our kernel (retransmission backs off: 0.2, 0.4, 0.8, 1.6, 3.2 s).
      assert.equal(await readLine(conn, 15000), "ack:two\n");
      await conn.write(enc.encode("three\n"));
      assert.equal(await readLine(conn, 5000), "ack:three\n");
    } finally {
      if (dumpId) unlockConnections(dumpId);
      close();
    }
    const status = await t.wait();
    assert.deepEqual(status.kind === "exited" && status.code, 0, t.output());
  }),
);

Deno.test(
  "network lock: without it (networkLock false) the same peer is reset",
  withTargets(async () => {
    const { t, conn, close } = await connected();
    try {
      const dir = await tempImageDir();
      const dump = await checkpoint(t.pid, { dir, optIns: OPT_INS, networkLock: false });
      await t.wait();
      assert.deepEqual(dump.networkLock, { skipped: "not asked for" });
      assert.equal(isLocked(dump.manifest.dumpId!), false);
      await conn.write(enc.encode("two\n"));
      await assert.rejects(() => readLine(conn, 5000), (e: Error) => {
        assert.ok(e instanceof Deno.errors.ConnectionReset, String(e));
        return true;
      });
    } finally {
      close();
    }
  }),
);

Deno.test(
  "network lock: the CLI dump says what it locked and `cryo image unlock` lifts it",
  withTargets(async () => {
    const { t, close } = await connected();
    let dumpId: string | undefined;
    try {
      const dir = await tempImageDir();
      const out = await runCli(["dump", String(t.pid), "--dir", dir, "--tcp-established"]);
      assert.equal(out.code, 0, out.stderr);
      await t.wait();
      dumpId = JSON.parse(Deno.readTextFileSync(`${dir}/manifest.json`)).dumpId as string;
      assert.match(
        out.stdout,
        new RegExp(
          `^1 TCP connection to peers outside the tree locked until the restore \\(${
            lockDir(dumpId)
          }\\)$`,
          "m",
        ),
      );
      assert.ok(isLocked(dumpId));
      const unlock = await runCli(["image", "unlock", dir]);
      assert.equal(unlock.code, 0, unlock.stderr);
      assert.equal(unlock.stdout.trim(), `lifted the network lock of ${dir}`);
      assert.equal(isLocked(dumpId), false);
      const again = await runCli(["image", "unlock", dir]);
      assert.equal(again.stdout.trim(), `${dir} has no network lock`);
    } finally {
      if (dumpId) unlockConnections(dumpId);
      close();
    }
  }),
);

Deno.test(
  "network lock: a dump that leaves the tree running makes no lock",
  withTargets(async () => {
    const { t, conn, close } = await connected();
    try {
      const dir = await tempImageDir();
      const dump = await checkpoint(t.pid, { dir, optIns: OPT_INS, leaveRunning: true });
      assert.equal(dump.networkLock, undefined);
      assert.equal(isLocked(dump.manifest.dumpId!), false);
      await conn.write(enc.encode("two\n"));
      assert.equal(await readLine(conn, 5000), "ack:two\n");
    } finally {
      close();
    }
    const status = await t.wait();
    assert.deepEqual(status.kind === "exited" && status.code, 0, t.output());
  }),
);

Deno.test("network lock: the program's UAPI numbers are the running kernel's", () => {
  const btf = Btf.vmlinux();
  const e = (en: string, n: string) => Number(btf.enumerator(en, n));
  assert.equal(e("bpf_cmd", "BPF_OBJ_PIN"), BPF_CMD.OBJ_PIN);
  assert.equal(e("bpf_prog_type", "BPF_PROG_TYPE_SCHED_CLS"), BPF_PROG_TYPE_SCHED_CLS);
  assert.equal(e("bpf_attach_type", "BPF_TCX_INGRESS"), BPF_TCX_INGRESS);
  assert.equal(e("bpf_func_id", "BPF_FUNC_skb_load_bytes_relative"), SKB_LOAD_BYTES_RELATIVE);
  assert.equal(e("tcx_action_base", "TCX_DROP"), TCX.DROP);
  assert.equal(e("tcx_action_base", "TCX_NEXT"), TCX.NEXT);
});

Deno.test("network lock: cryo check's probe loads the program and attaches it on lo", () => {
  assert.equal(probeNetworkLock(), undefined);
});
