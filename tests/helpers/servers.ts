/**
 * Test helpers for round trips of real servers: a free port, finding an
 * installed program, reading a reply off a client connection and waiting
 * until a server listens.
 *
 * @module
 */

import type { Target } from "./targets.ts";
import { deadlineIn } from "./wait.ts";

/**
 * A TCP port that was free a moment ago, for a server that must be told
 * its port (redis has no port 0). It is taken below the kernel's ephemeral
 * range, where no connect() or port-0 bind on this busy machine picks its
 * local port between our check and the server's bind.
 */
export function freePort(): number {
  const [low] = Deno.readTextFileSync("/proc/sys/net/ipv4/ip_local_port_range").trim()
    .split(/\s+/).map(Number);
  const base = Math.max(1024, Math.min(low, 32768) - 12000);
  for (let tries = 0; tries < 1000; tries++) {
    const port = base + Math.floor(Math.random() * 12000);
    try {
      Deno.listen({ hostname: "127.0.0.1", port }).close();
      return port;
    } catch { /* in use: another */ }
  }
  throw new Error("no free port below the ephemeral range");
}

/** The first of `candidates` that exists, else `name` found in PATH (and sbin), else undefined. */
export function findProgram(name: string, ...candidates: string[]): string | undefined {
  const dirs = [...(Deno.env.get("PATH") ?? "").split(":"), "/usr/sbin", "/sbin"];
  const path = dirs.filter(Boolean).map((d) => `${d}/${name}`);
  for (const p of [...candidates, ...path]) {
    try {
      if (Deno.statSync(p).isFile) return p;
    } catch { /* not there */ }
  }
  return undefined;
}

/** Reads from `conn` until `done(text)` says the reply is complete (5 s at most). */
export async function readUntil(
  conn: Deno.Conn,
  done: (text: string) => boolean,
): Promise<string> {
  const buf = new Uint8Array(4096);
  let text = "";
  const deadline = deadlineIn(5000);
  while (!done(text)) {
    if (Date.now() > deadline) throw new Error(`no complete reply, got ${JSON.stringify(text)}`);
    const n = await conn.read(buf);
    if (n === null) throw new Error(`connection closed, got ${JSON.stringify(text)}`);
    text += new TextDecoder().decode(buf.subarray(0, n));
  }
  return text;
}

/** Waits until the server listens on 127.0.0.1:`port` (seen in /proc/net/tcp, no probe connection). */
export async function waitListening(t: Target, port: number): Promise<void> {
  const want = `0100007F:${port.toString(16).toUpperCase().padStart(4, "0")} 00000000:0000 0A`;
  const deadline = deadlineIn(20000);
  while (!Deno.readTextFileSync("/proc/net/tcp").includes(want)) {
    if (t.poll()) throw new Error(`server exited:\n${t.output()}`);
    if (Date.now() > deadline) throw new Error(`server never listened:\n${t.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Sends `text` on `conn` and reads until the reply ends with `end`. */
export async function exchange(conn: Deno.Conn, text: string, end: string): Promise<string> {
  await conn.write(new TextEncoder().encode(text));
  return await readUntil(conn, (t) => t.endsWith(end));
}

/** Runs `fn` on a new connection to 127.0.0.1:`port`, closed after (a client new since the restore). */
export async function onFreshConnection<T>(
  port: number,
  fn: (conn: Deno.Conn) => Promise<T>,
): Promise<T> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    return await fn(conn);
  } finally {
    conn.close();
  }
}

/**
 * The path of program `name`, or undefined after a line on stderr saying that `test` skips
 * what needs it and which Debian package `pkg` brings it.
 */
export function needProgram(test: string, name: string, pkg: string): string | undefined {
  const path = findProgram(name);
  if (!path) console.error(`${test}: ${name} not found (apt-get install -y ${pkg}); skipping`);
  return path;
}
