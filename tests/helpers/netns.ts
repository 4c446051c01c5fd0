/**
 * A pair of private network namespaces joined by a veth pair, made by a
 * test with iproute2 (`ip netns add`, `ip link add ... type veth`), with
 * unique names; the root namespace gets no interface or address. The
 * namespaces are removed again (their veth ends go with them) whatever
 * the test did; only names this helper made are ever removed.
 *
 * @module
 */

import { runCommand } from "./commands.ts";

/** One end of the pair: its namespace and address. */
export interface NetnsEnd {
  /** Name under /run/netns. */
  name: string;
  /** Its IPv4 address on the veth. */
  addr: string;
  /** A command prefix that execs a program in this namespace (only the network one). */
  enter: string[];
}

/** Why a namespace pair cannot be made here, or undefined when it can (checked once). */
export async function netnsUnavailable(): Promise<string | undefined> {
  if (Deno.uid() !== 0) return "not root: cannot make network namespaces";
  for (const tool of ["ip", "nsenter"]) {
    const r = await runCommand(["sh", "-c", `command -v ${tool}`]).catch(() => undefined);
    if (!r || r.code !== 0) return `${tool} is not installed (iproute2 / util-linux)`;
  }
  return undefined;
}

async function ip(args: string[]): Promise<void> {
  const r = await runCommand(["ip", ...args]);
  if (r.code !== 0) throw new Error(`ip ${args.join(" ")}: ${r.stderr.trim()}`);
}

/**
 * Runs `fn` with two fresh network namespaces `a` (10.199.x.1) and `b`
 * (10.199.x.2) joined by a veth pair, then deletes both (also when `fn`
 * or the set-up throws).
 */
export async function withNetnsPair<T>(fn: (a: NetnsEnd, b: NetnsEnd) => Promise<T>): Promise<T> {
  const tag = `${Deno.pid.toString(36)}${
    crypto.getRandomValues(new Uint32Array(1))[0].toString(36)
  }`
    .slice(0, 10);
  const made: string[] = [];
  const end = (side: string, host: number): NetnsEnd => {
    const name = `cryo-test-${tag}-${side}`;
    return {
      name,
      addr: `10.199.${host}.${side === "a" ? 1 : 2}`,
      enter: [nsenter, `--net=/run/netns/${name}`, "--"],
    };
  };
  const which = await runCommand(["sh", "-c", "command -v nsenter"]);
  const nsenter = which.stdout.trim() || "nsenter";
  const net = Math.floor(Math.random() * 250);
  const a = end("a", net), b = end("b", net);
  try {
    for (const e of [a, b]) {
      await ip(["netns", "add", e.name]);
      made.push(e.name);
    }
    await ip([
      "link",
      "add",
      `cv${tag}a`.slice(0, 15),
      "netns",
      a.name,
      "type",
      "veth",
      "peer",
      "name",
      `cv${tag}b`.slice(0, 15),
      "netns",
      b.name,
    ]);
    for (
      const [e, dev] of [[a, `cv${tag}a`.slice(0, 15)], [b, `cv${tag}b`.slice(0, 15)]] as const
    ) {
      await ip(["-n", e.name, "addr", "add", `${e.addr}/30`, "dev", dev]);
      await ip(["-n", e.name, "link", "set", dev, "up"]);
      await ip(["-n", e.name, "link", "set", "lo", "up"]);
    }
    return await fn(a, b);
  } finally {
    for (const name of made.reverse()) {
      await runCommand(["ip", "netns", "del", name]).catch(() => {});
    }
  }
}
