/**
 * The credentials read-back without a parse (engine/task/creds_text.ts):
 * for every thread of every process of the host, the record made from its
 * parsed status is found, as text, in that status (the kernel prints the
 * fields the way they are written out); a record that differs in any one
 * field (each uid, each gid, the groups, each capability set,
 * no_new_privs) is not, so the restore parses and compares it as before.
 * A synthetic status covers supplementary groups.
 */

import assert from "node:assert/strict";
import { CredsLines, credsStatusLines, statusHoldsCreds } from "../engine/task/creds_text.ts";
import { parseStatus } from "../engine/proc/status.ts";
import { readThreadCreds } from "../engine/task/creds.ts";
import type { ThreadCredentials } from "../engine/model.ts";

/** Records that differ from `c` in exactly one field. */
function variants(c: ThreadCredentials): ThreadCredentials[] {
  const out: ThreadCredentials[] = [];
  for (let k = 0; k < 4; k++) {
    const uid = [...c.uid] as ThreadCredentials["uid"];
    uid[k] += 1;
    out.push({ ...c, uid });
    const gid = [...c.gid] as ThreadCredentials["gid"];
    gid[k] += 1;
    out.push({ ...c, gid });
  }
  out.push({ ...c, groups: [...c.groups, 99999] });
  if (c.groups.length) out.push({ ...c, groups: c.groups.slice(1) });
  for (const key of ["capInh", "capPrm", "capEff", "capBnd", "capAmb"] as const) {
    out.push({ ...c, [key]: `0x${(BigInt(c[key]) ^ 1n).toString(16)}` });
    out.push({ ...c, [key]: `0x${(BigInt(c[key]) ^ (1n << 63n)).toString(16)}` });
  }
  out.push({ ...c, noNewPrivs: !c.noNewPrivs });
  return out;
}

function checkText(text: string, where: string): void {
  const st = parseStatus(text);
  const rec = readThreadCreds(0, 0, 0, false, st);
  assert.ok(statusHoldsCreds(text, credsStatusLines(rec)), `${where}: its own record`);
  for (const v of variants(rec)) {
    assert.ok(!statusHoldsCreds(text, credsStatusLines(v)), `${where}: ${JSON.stringify(v)}`);
  }
}

Deno.test("creds text: every thread of the host holds its own record, never one that differs", () => {
  let seen = 0;
  for (const p of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(p.name)) continue;
    let tids: string[];
    try {
      tids = [...Deno.readDirSync(`/proc/${p.name}/task`)].map((e) => e.name);
    } catch {
      continue; // gone
    }
    for (const tid of tids) {
      let text: string;
      try {
        text = Deno.readTextFileSync(`/proc/${p.name}/task/${tid}/status`);
      } catch {
        continue;
      }
      checkText(text, `${p.name}/${tid}`);
      seen++;
    }
  }
  assert.ok(seen > 10);
});

Deno.test("creds text: supplementary groups, as the kernel prints them", () => {
  const own = Deno.readTextFileSync("/proc/self/status");
  const text = own.replace(/\nGroups:\t[^\n]*\n/, "\nGroups:\t4 24 27 1000 \n");
  assert.notEqual(text, own.replace(/\nGroups:\t[^\n]*\n/, "\nGroups:\t \n"));
  checkText(text, "synthetic");
  const rec = readThreadCreds(0, 0, 0, false, parseStatus(text));
  assert.deepEqual(rec.groups, [4, 24, 27, 1000]);
  // Without the kernel's trailing space, or in another order: not the record's text.
  assert.ok(!statusHoldsCreds(text.replace("1000 \n", "1000\n"), credsStatusLines(rec)));
  assert.ok(!statusHoldsCreds(text, credsStatusLines({ ...rec, groups: [24, 4, 27, 1000] })));
});

Deno.test("creds text: the lines of each record, made again when a field differs", () => {
  const rec = readThreadCreds(
    0,
    0,
    0,
    false,
    parseStatus(Deno.readTextFileSync("/proc/self/status")),
  );
  const lines = new CredsLines();
  assert.deepEqual(lines.of(rec), credsStatusLines(rec));
  assert.deepEqual(lines.of({ ...rec }), credsStatusLines(rec));
  for (const v of variants(rec)) {
    assert.deepEqual(lines.of(v), credsStatusLines(v));
    assert.notDeepEqual(lines.of(v), credsStatusLines(rec));
  }
  // Capability texts the kernel never prints never match: no digits, too many, capitals.
  const text = Deno.readTextFileSync("/proc/self/status");
  for (const capInh of ["0x", "0x00000000000000000", "0X0"]) {
    assert.ok(!statusHoldsCreds(text, credsStatusLines({ ...rec, capInh })), capInh);
  }
});
