/**
 * Schemas of the socket records an image holds (`FdInfo.inet`,
 * `FdInfo.netlink`): the image schema keeps fd records loose, and each
 * kind checks its own record before it plans anything from it, so a
 * damaged or hostile image is refused naming the field. The schemas are
 * built at the first check (`z.lazy`), not at every dump's start.
 *
 * @module
 */

import * as z from "../image/shape.ts";
import { AF, decodeInetAddr, encodeInetAddr } from "../../ffi/net.ts";
import { decodeBase64 } from "../base64.ts";
import type { FdInfo } from "../model.ts";

const int = z.number().int();
const nat = int.nonnegative();
const u32 = nat.max(0xffffffff);
const base64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, "expected base64");

/** An address whose text survives encoding as a sockaddr unchanged. */
function exactAddress(family: number) {
  return (a: { address: string; port: number }) => {
    try {
      return decodeInetAddr(encodeInetAddr(family, { ...a, port: 0 }))?.address === a.address;
    } catch {
      return false;
    }
  };
}

const sockAddr = z.lazy(() =>
  z.looseObject({
    address: z.string().max(64),
    port: nat.max(65535),
    flowinfo: u32.optional(),
    scopeId: u32.optional(),
  })
);

const sockOption = z.lazy(() =>
  z.looseObject({
    level: nat,
    name: nat,
    label: z.string().max(64),
    int: int.optional(),
    bytes: base64.max(128).optional(),
  })
);

const buffers = z.lazy(() =>
  z.looseObject({ snd: nat.optional(), rcv: nat.optional(), lock: nat.max(3).optional() })
    .optional()
);

/** A socket's owner: ids the restore program switches to (u32, not the -1 "unchanged"). */
const owner = z.lazy(() =>
  z.looseObject({ uid: nat.max(0xfffffffe), gid: nat.max(0xfffffffe) }).optional()
);

const tcp = z.lazy(() =>
  z.looseObject({
    peerInTree: z.boolean(),
    sndSeq: u32,
    rcvSeq: u32,
    sendQueue: base64,
    unsent: nat,
    recvQueue: base64,
    mss: nat.max(65535),
    wscale: z.looseObject({ snd: nat.max(14), rcv: nat.max(14) }).nullable(),
    sack: z.boolean(),
    timestamps: z.boolean(),
    timestamp: u32,
    window: z.looseObject({ sndWl1: u32, sndWnd: u32, maxWindow: u32, rcvWnd: u32, rcvWup: u32 }),
    closing: z.enum(["fin-wait1", "fin-wait2", "close-wait", "last-ack", "closing"]).optional(),
    readShut: z.literal(true).optional(),
  }).refine((t) => t.unsent <= decodeBase64(t.sendQueue).length, {
    message: "more unsent bytes than the send queue holds",
    path: ["unsent"],
  })
);

const inet = z.lazy(() =>
  z.looseObject({
    family: z.enum(["ipv4", "ipv6"]),
    proto: z.enum(["tcp", "udp", "udplite", "ping", "raw"]),
    // Below IPPROTO_MAX (263, since IPPROTO_MPTCP 262), as socket() checks.
    protocol: z.number().int().min(0).max(262).optional(),
    state: z.enum(["listen", "established", "closed"]),
    local: sockAddr.nullable(),
    peer: sockAddr.nullable(),
    options: z.array(sockOption).max(64),
    buffers,
    backlog: nat.max(1 << 20).optional(),
    reuseportGroup: z.boolean().optional(),
    shutdown: z.number().int().min(1).max(3).optional(),
    // BPF_MAXINSNS (4096) instructions of 8 bytes, in base64.
    filter: z.looseObject({ code: base64.max(43692).optional(), locked: z.boolean().optional() })
      .optional(),
    tcp: tcp.optional(),
    owner,
    datagrams: z.array(z.looseObject({ from: sockAddr, data: base64.max(87400) })).max(1 << 16)
      .optional(),
  }).superRefine((s, ctx) => {
    const family = s.family === "ipv4" ? AF.INET : AF.INET6;
    for (const key of ["local", "peer"] as const) {
      const a = s[key];
      if (a && !exactAddress(family)(a)) {
        ctx.addIssue({
          code: "custom",
          message: `not an ${s.family} address`,
          path: [key, "address"],
        });
      }
    }
    const established = s.state === "established";
    if (established !== (s.tcp !== undefined) || (established && (!s.local || !s.peer))) {
      ctx.addIssue({
        code: "custom",
        message: "an established connection needs tcp, local and peer",
      });
    }
    if (s.datagrams && (s.proto !== "udp" || !s.local)) {
      ctx.addIssue({ code: "custom", message: "only a bound UDP socket has queued datagrams" });
    }
    (s.datagrams ?? []).forEach((d, i) => {
      if (!exactAddress(s.family === "ipv4" ? AF.INET : AF.INET6)(d.from)) {
        ctx.addIssue({
          code: "custom",
          message: `not an ${s.family} address`,
          path: ["datagrams", i, "from", "address"],
        });
      }
    });
    if (s.proto !== "tcp" && s.state !== "closed") {
      const kind = { udp: "UDP", udplite: "UDP-Lite", ping: "ping", raw: "raw" }[s.proto];
      ctx.addIssue({
        code: "custom",
        message: `a ${kind} socket is never listening or established`,
      });
    }
    if ((s.proto === "raw") !== (s.protocol !== undefined)) {
      ctx.addIssue({ code: "custom", message: "a raw socket, and only one, has its protocol" });
    }
    if (s.state === "listen" && (!s.local || s.peer)) {
      ctx.addIssue({ code: "custom", message: "a listener is bound and has no peer" });
    }
  })
);

const netlink = z.lazy(() =>
  z.looseObject({
    protocol: z.union([z.literal(0), z.literal(15)]),
    type: z.union([z.literal(2), z.literal(3)]),
    portid: u32,
    groups: z.array(int.min(1).max(1024)).max(1024),
    peer: z.looseObject({ portid: u32, groups: u32 }).nullable(),
    options: z.array(sockOption).max(64),
    buffers,
    owner,
  })
);

const packet = z.lazy(() =>
  z.looseObject({
    type: z.union([z.literal(2), z.literal(3)]),
    protocol: nat.max(0xffff),
    ifindex: nat.max(0x7fffffff),
    ifname: z.string().max(16).optional(),
    options: z.array(sockOption).max(64),
    buffers,
    memberships: z.array(
      z.looseObject({
        ifindex: nat.max(0x7fffffff),
        ifname: z.string().max(16).optional(),
        type: nat.max(3),
        address: z.string().regex(/^([0-9a-f]{2}){0,32}$/),
        count: nat.max(1 << 16),
      }),
    ).max(1024),
    fanout: u32.optional(),
    filter: z.looseObject({ code: base64.max(43692).optional(), locked: z.boolean().optional() })
      .optional(),
    owner,
  })
);

/** Why the socket record of `f` cannot be used, or undefined when it is sound. */
export function socketRecordProblem(f: FdInfo): string | undefined {
  const checks: [string, z.ZodType, unknown][] = [];
  if (f.inet !== undefined) checks.push(["inet", inet, f.inet]);
  if (f.netlink !== undefined) checks.push(["netlink", netlink, f.netlink]);
  if (f.packet !== undefined) checks.push(["packet", packet, f.packet]);
  for (const [name, schema, value] of checks) {
    const r = schema.safeParse(value);
    if (!r.success) {
      const issue = r.error.issues[0];
      const path = [name, ...issue.path.map(String)].join(".");
      return `damaged socket record: ${path}: ${issue.message}`;
    }
  }
  return undefined;
}
