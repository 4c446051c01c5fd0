/**
 * A fast test of the common thread record of an image (engine/image/schema.ts's
 * `thread`): the generic shape checks ran a closure per field and a regular
 * expression per register value, ~80 checks per thread at every restore
 * (64 threads: 3 to 6 ms of the plan). {@link plainThreadFits} says true
 * only of a record those checks pass; anything else (a missing or odd
 * field, any doubt) says false, and the record is checked the generic way,
 * with the same verdict, path and message as before.
 *
 * @module
 */

import { isHex64 } from "./mapping_fast.ts";

/** The schema's `base64` pattern (the same expression: the same verdict). */
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const RESTARTS: ReadonlySet<unknown> = new Set(["none", "restart", "eintr"]);

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

/** The schema's `int`: a safe integer. */
function isInt(v: unknown): boolean {
  return typeof v === "number" && Number.isSafeInteger(v);
}

/** The schema's `nat`: a safe integer, at least 0. */
function isNat(v: unknown): boolean {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/** The schema's `id32`: a nat up to 0xfffffffe. */
function isId32(v: unknown): boolean {
  return isNat(v) && (v as number) <= 0xfffffffe;
}

function isBase64(v: unknown): boolean {
  return typeof v === "string" && BASE64.test(v);
}

function allOf(a: unknown, ok: (v: unknown) => boolean, max = Infinity): boolean {
  if (!Array.isArray(a) || a.length > max) return false;
  for (let i = 0; i < a.length; i++) if (!ok(a[i])) return false;
  return true;
}

function isSigInfo(s: unknown): boolean {
  return isPlainObject(s) && isInt(s.signo) && (s.signo as number) >= 1 &&
    (s.signo as number) <= 64 && isInt(s.code) && isBase64(s.raw);
}

function isSched(s: unknown): boolean {
  return isPlainObject(s) && isInt(s.policy) && isInt(s.flags) && isInt(s.priority) &&
    isInt(s.nice) && typeof s.runtime === "string" && typeof s.deadline === "string" &&
    typeof s.period === "string" && isInt(s.utilMin) && isInt(s.utilMax) &&
    allOf(s.cpus, isNat) && typeof s.timerSlackNs === "number" &&
    Number.isFinite(s.timerSlackNs) && isInt(s.ioprio);
}

function isCreds(c: unknown): boolean {
  if (!isPlainObject(c)) return false;
  const { uid, gid } = c;
  return Array.isArray(uid) && uid.length === 4 && allOf(uid, isId32) &&
    Array.isArray(gid) && gid.length === 4 && allOf(gid, isId32) &&
    allOf(c.groups, isId32, 65536) && isHex64(c.capInh) && isHex64(c.capPrm) &&
    isHex64(c.capEff) && isHex64(c.capBnd) && isHex64(c.capAmb) && isNat(c.securebits) &&
    typeof c.keepCaps === "boolean" && typeof c.noNewPrivs === "boolean";
}

/**
 * True only when `x` passes the schema's thread checks: every field the
 * schema names is present with its type, bounds and pattern (`sched` and
 * `creds` absent or whole, `rseq` null or whole). False means "check it the
 * generic way", not "refused".
 */
export function plainThreadFits(x: unknown): boolean {
  if (!isPlainObject(x)) return false;
  if (!isInt(x.tid) || typeof x.comm !== "string") return false;
  const regs = x.regs;
  if (!isPlainObject(regs)) return false;
  const names = Object.keys(regs);
  for (let i = 0; i < names.length; i++) if (!isHex64(regs[names[i]])) return false;
  if (x.xsave !== undefined && !isBase64(x.xsave)) return false;
  if (!isHex64(x.sigmask) || !allOf(x.pending, isSigInfo)) return false;
  const ss = x.sigaltstack;
  if (!isPlainObject(ss) || !isHex64(ss.sp) || !isInt(ss.flags) || !isNat(ss.size)) return false;
  const rseq = x.rseq;
  if (
    rseq !== null &&
    !(isPlainObject(rseq) && isHex64(rseq.addr) && isNat(rseq.len) && isHex64(rseq.sig) &&
      isInt(rseq.flags))
  ) {
    return false;
  }
  const rl = x.robustList;
  if (!isPlainObject(rl) || !isHex64(rl.head) || !isNat(rl.len)) return false;
  if (!isHex64(x.clearChildTid)) return false;
  const sc = x.syscall;
  if (!isPlainObject(sc) || !isInt(sc.nr) || !RESTARTS.has(sc.restart)) return false;
  if (x.sched !== undefined && !isSched(x.sched)) return false;
  if (x.creds !== undefined && !isCreds(x.creds)) return false;
  if (x.mempolicy !== undefined) return false; // checked by the schema
  return true;
}
