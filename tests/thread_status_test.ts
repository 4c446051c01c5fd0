/**
 * The per-thread status a dump reads once after the freeze
 * (engine/proc/status.ts readThreadStatuses): its Name line serves as the
 * thread's comm (statusComm undoes the kernel's escapes), and each thread
 * gets its own status, not the main thread's.
 */

import assert from "node:assert/strict";
import {
  parseStatus,
  type ProcStatus,
  readThreadStatuses,
  statusComm,
} from "../engine/proc/status.ts";
import { listTids } from "../engine/proc/tasks.ts";

/** This process's main thread comm, set to `name` while `fn` runs. */
function withOwnComm(name: string, fn: () => void): void {
  const path = `/proc/self/task/${Deno.pid}/comm`;
  const before = Deno.readTextFileSync(path).replace(/\n$/, "");
  Deno.writeTextFileSync(path, name);
  try {
    fn();
  } finally {
    Deno.writeTextFileSync(path, before);
  }
}

Deno.test("a thread's comm read from its status equals its comm file, escapes undone", () => {
  for (const name of ["plain", "a\\b", "x\\ny", "new\nline", "tab\tend ", "\\\\n\\"]) {
    withOwnComm(name, () => {
      const comm = Deno.readTextFileSync(`/proc/self/task/${Deno.pid}/comm`).replace(/\n$/, "");
      const st = readThreadStatuses(Deno.pid, [Deno.pid]).get(Deno.pid)!;
      assert.equal(statusComm(st), comm, `comm ${JSON.stringify(name)}`);
    });
  }
});

Deno.test("each thread's status is its own (Pid line, comm)", () => {
  const tids = listTids(Deno.pid);
  const statuses = readThreadStatuses(Deno.pid, tids);
  assert.equal(statuses.size, tids.length);
  for (const tid of tids) {
    const st = statuses.get(tid)!;
    assert.equal(st.pid, tid);
    assert.equal(st.tgid, Deno.pid);
    const comm = Deno.readTextFileSync(`/proc/self/task/${tid}/comm`).replace(/\n$/, "");
    assert.equal(statusComm(st), comm);
  }
});

/** Every field of `st` as the plain table of its lines (`fields`) gives it. */
function fromTable(st: ProcStatus) {
  const f = st.fields;
  const ints = (v?: string) => (v ?? "").split(/\s+/).filter((x) => x !== "").map(Number);
  const hex = (v?: string) => BigInt(`0x${v}`);
  return {
    umask: f.Umask === undefined ? null : parseInt(f.Umask, 8),
    state: f.State.charAt(0),
    tgid: Number(f.Tgid),
    pid: Number(f.Pid),
    ppid: Number(f.PPid),
    tracerPid: Number(f.TracerPid),
    uid: ints(f.Uid),
    gid: ints(f.Gid),
    groups: ints(f.Groups),
    nstgid: ints(f.NStgid),
    nspid: ints(f.NSpid),
    nspgid: ints(f.NSpgid),
    nssid: ints(f.NSsid),
    threads: Number(f.Threads),
    sigQ: { queued: Number(f.SigQ.split("/")[0]), limit: Number(f.SigQ.split("/")[1]) },
    sigPnd: hex(f.SigPnd),
    shdPnd: hex(f.ShdPnd),
    sigBlk: hex(f.SigBlk),
    sigIgn: hex(f.SigIgn),
    sigCgt: hex(f.SigCgt),
    capInh: hex(f.CapInh),
    capPrm: hex(f.CapPrm),
    capEff: hex(f.CapEff),
    capBnd: hex(f.CapBnd),
    capAmb: f.CapAmb === undefined ? 0n : hex(f.CapAmb),
    noNewPrivs: f.NoNewPrivs === "1",
    seccomp: f.Seccomp === undefined ? 0 : Number(f.Seccomp),
    kthread: f.Kthread === undefined ? null : f.Kthread === "1",
    threadFeatures: f.x86_Thread_features ?? "",
  };
}

Deno.test("parseStatus finds each line by its key: every field equals the plain line table's", () => {
  let n = 0;
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name) || n >= 300) continue;
    let text: string;
    try {
      text = Deno.readTextFileSync(`/proc/${e.name}/status`);
    } catch {
      continue; // gone
    }
    const st = parseStatus(text);
    const { fields: _, name: __, ...typed } = st;
    assert.deepEqual(typed, fromTable(st), `/proc/${e.name}/status`);
    assert.equal(st.name, text.match(/^Name:\t(.*)$/m)![1]);
    n++;
  }
  assert.ok(n > 3, `${n} statuses compared`);
  // Keys that are prefixes or suffixes of others, a Name with a colon and trailing spaces.
  const own = Deno.readTextFileSync("/proc/self/status");
  const odd = own.replace(/^Name:\t.*$/m, "Name:\tx: Pid:\t7  ")
    .replace(/^(Seccomp:\t.*)\n(Seccomp_filters:\t.*)$/m, "$2\n$1");
  const st = parseStatus(odd);
  assert.equal(st.name, "x: Pid:\t7  ");
  assert.equal(st.pid, Deno.pid);
  assert.deepEqual(st.seccomp, Number(st.fields.Seccomp));
  assert.throws(() => parseStatus(own.replace(/^Uid:.*\n/m, "")), /no Uid line/);
  // The lines in other orders (the parse searches on from the last line found, and from the
  // start when that misses): the same fields.
  const lines = own.trimEnd().split("\n");
  const orders = [
    [...lines].reverse(),
    [...lines.slice(20), ...lines.slice(0, 20)],
    lines.map((_, i) => lines[(i * 7) % lines.length]).filter((l, i, a) => a.indexOf(l) === i),
  ];
  const want = parseStatus(own);
  for (const order of orders) {
    const text = [...new Set([...order, ...lines])].join("\n") + "\n";
    const got = parseStatus(text);
    const { fields: _f, ...g } = got;
    const { fields: _w, ...w } = want;
    assert.deepEqual(g, w);
    assert.deepEqual(parseStatus(text, 0, "status", want).sigBlk, want.sigBlk);
  }
});

Deno.test("parseStatus like a sibling's: the same fields as parsed alone, shared blocks or not", () => {
  // Each status of the host parsed like the one before (another process: some blocks
  // the same text, some not), then texts that differ from their `like` in one line each.
  let like: ProcStatus | undefined;
  let n = 0;
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name) || n >= 300) continue;
    let text: string;
    try {
      text = Deno.readTextFileSync(`/proc/${e.name}/status`);
    } catch {
      continue; // gone
    }
    const st = parseStatus(text, 0, "status", like);
    const { fields: _, name: __, ...typed } = st;
    assert.deepEqual(typed, fromTable(st), `/proc/${e.name}/status`);
    like = parseStatus(text);
    n++;
  }
  assert.ok(n > 3, `${n} statuses compared`);
  const own = Deno.readTextFileSync("/proc/self/status");
  const base = parseStatus(own);
  const edits: [RegExp, string][] = [
    [/^Uid:.*$/m, "Uid:\t1\t2\t3\t4"],
    [/^Groups:.*$/m, "Groups:\t7 8 "],
    [/^SigCgt:.*$/m, "SigCgt:\t0000000000004000"],
    [/^CapEff:.*$/m, "CapEff:\t0000000000000001"],
    [/^NoNewPrivs:.*$/m, "NoNewPrivs:\t1"],
    [/^Seccomp:.*$/m, "Seccomp:\t2"],
  ];
  for (const [re, line] of edits) {
    const st = parseStatus(own.replace(re, line), 0, "status", base);
    const { fields: _, name: __, ...typed } = st;
    assert.deepEqual(typed, fromTable(st), line);
    const same = parseStatus(own, 0, "status", st);
    const { fields: ___, name: ____, ...back } = same;
    assert.deepEqual(back, fromTable(same), `back from ${line}`);
  }
});
