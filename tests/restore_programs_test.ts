/**
 * Round trips of real programs that print a counter: a python3 loop, a
 * /bin/sh loop (a process tree: the shell and its `sleep` child) and a
 * Node.js setInterval. Each is dumped, killed and restored with the same
 * pid; its output must go on from the last number printed before the dump
 * (no restart from 1, nothing lost, nothing repeated).
 */

import assert from "node:assert/strict";
import { ppidOf } from "./helpers/proc.ts";
import { dumpKillRestore } from "./helpers/roundtrip.ts";
import { adoptPid, startTarget, type Target, withTargets } from "./helpers/targets.ts";
import { deadlineIn, sleep } from "./helpers/wait.ts";
import { pathExists, tempDir } from "./helpers/fs.ts";
import { assertOneLineError, runCli } from "./helpers/commands.ts";

/**
 * The integers a counter program printed, one per line (a partial last
 * line is ignored, and so are warnings on its stderr, such as gawk's on its
 * time extension).
 */
function counterLines(t: Target): number[] {
  const out = t.output();
  const complete = out.endsWith("\n") ? out : out.slice(0, out.lastIndexOf("\n") + 1);
  return complete.split("\n").filter((l) => l !== "" && !/ warning: /.test(l)).map((l) => {
    assert.match(l, /^\d+$/, `unexpected output line ${JSON.stringify(l)} in:\n${out}`);
    return Number(l);
  });
}

/** Waits until the counter printed at least `n`. */
async function waitForCount(t: Target, n: number, timeoutMs = 10000): Promise<number[]> {
  const deadline = deadlineIn(timeoutMs);
  for (;;) {
    const lines = counterLines(t);
    if (lines.length && lines[lines.length - 1] >= n) return lines;
    if (Date.now() > deadline) {
      throw new Error(`counter of ${t.pid} did not reach ${n}; output:\n${t.output()}`);
    }
    await sleep(20);
  }
}

/** Asserts `lines` is exactly 1, 2, ..., last. */
function assertConsecutive(lines: number[], what: string): void {
  const expected = lines.map((_, i) => i + 1);
  assert.deepEqual(lines, expected, `${what}: the counter did not go on from where it stopped`);
}

/**
 * Runs a counter program, dumps it after `before` lines, restores it and
 * watches it count on. With `tree`, the dump must have caught the program
 * with a child (else returns false, after killing it, so the caller can retry).
 */
async function roundTripCounter(
  path: string,
  args: string[],
  opts: { before: number; after: number; tree?: boolean; firstWaitMs?: number },
): Promise<boolean> {
  const t = await startTarget(path, args);
  await waitForCount(t, opts.before, opts.firstWaitMs);
  const pid = t.pid;

  const rt = await dumpKillRestore(t);
  assert.equal(rt.tree.pids.length, rt.dump.stats.processes);
  if (opts.tree) {
    if (rt.tree.pids.length < 2) {
      await t.kill(); // caught between two children: try again
      return false;
    }
    assert.equal(rt.tree.pids.length, 2, `restored pids ${rt.tree.pids}`);
    const child = rt.tree.pids.find((p) => p !== pid)!;
    try {
      const ppid = ppidOf(child);
      assert.equal(ppid, pid, `restored child ${child} has parent ${ppid}`);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e; // the child already finished
    }
  }
  const stopped = counterLines(t);
  const last = stopped[stopped.length - 1];
  assertConsecutive(stopped, "before the dump");

  const lines = await waitForCount(t, last + opts.after);
  assertConsecutive(lines, "after the restore");
  assert.equal(t.poll(), undefined, `restored process exited:\n${t.output()}`);
  const cmdline = Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0");
  assert.deepEqual(cmdline.slice(1, 1 + args.length), args, "another process has that pid");
  return true;
}

/** A test that a counter program runs on from where it was dumped (5 numbers before, 5 after). */
function countsOn(program: string, args: string[]): () => Promise<void> {
  return withTargets(async () => {
    await roundTripCounter(program, args, { before: 5, after: 5 });
  });
}

Deno.test(
  "a python3 counter loop goes on counting after dump, kill and restore",
  countsOn("/usr/bin/python3", [
    "-c",
    "import sys, time\ni = 0\nwhile True:\n  i += 1\n  print(i, flush=True)\n  time.sleep(0.05)",
  ]),
);

Deno.test(
  "a /bin/sh counter loop (shell + sleep child: a process tree) goes on counting after dump, kill and restore",
  withTargets(async () => {
    const args = ["-c", "i=0; while :; do i=$((i+1)); echo $i; sleep 0.2; done"];
    for (let attempt = 1; attempt <= 3; attempt++) {
      if (await roundTripCounter("/bin/sh", args, { before: 3, after: 3, tree: true })) return;
    }
    assert.fail("the dump never caught the shell with its sleep child");
  }),
);

Deno.test(
  "a Node.js setInterval counter goes on counting after dump, kill and restore",
  countsOn("/usr/bin/node", [
    "-e",
    "let i = 0; setInterval(() => { i += 1; process.stdout.write(i + '\\n'); }, 50);",
  ]),
);

Deno.test(
  "a perl counter loop goes on counting after dump, kill and restore",
  countsOn("/usr/bin/perl", [
    "-e",
    '$| = 1; my $i = 0; while (1) { $i++; print "$i\\n"; select(undef, undef, undef, 0.05); }',
  ]),
);

const gawk = ["/usr/bin/gawk"].find((p) => {
  try {
    return Deno.statSync(p).isFile;
  } catch {
    return false;
  }
});
if (!gawk) {
  console.error("restore_programs_test: gawk not found (apt-get install -y gawk); skipping");
}

Deno.test({
  name: "a gawk counter loop (time extension) goes on counting after dump, kill and restore",
  ignore: !gawk,
  fn: countsOn(gawk ?? "", [
    '@load "time"; BEGIN { while (1) { i++; print i; fflush(); sleep(0.05) } }',
  ]),
});

/** A Java program printing a counter every 50 ms, written into `work`. */
async function javaCounter(work: string): Promise<string> {
  await Deno.writeTextFile(
    `${work}/Counter.java`,
    `public class Counter {
  public static void main(String[] a) throws Exception {
    StringBuilder junk = new StringBuilder();
    for (int i = 1; ; i++) {
      System.out.println(i);
      System.out.flush();
      junk.append(i);
      if (junk.length() > 100000) junk = new StringBuilder();
      Thread.sleep(50);
    }
  }
}
`,
  );
  return `${work}/Counter.java`;
}

const java = ["/usr/bin/java"].find((p) => {
  try {
    return Deno.statSync(p).isFile;
  } catch {
    return false;
  }
});

Deno.test({
  name: "a Java counter (a JVM: JIT and GC threads) goes on counting after dump, kill and restore",
  ignore: !java,
  fn: withTargets(async () => {
    const work = await tempDir("cryo-java-");
    const source = await javaCounter(work);
    // Without -XX:-UsePerfData the JVM holds a flock on /tmp/hsperfdata_<user>/<pid> through a
    // mapping only (its fd closed), which the dump refuses by name (see the test below).
    await roundTripCounter(java!, [
      "-XX:-UsePerfData",
      "-Xmx64m",
      "-XX:+UseSerialGC",
      "-Xshare:off",
      source,
    ], { before: 5, after: 5, firstWaitMs: 60000 });
  }),
});

Deno.test({
  name:
    "a JVM with its perf data file (flock held through a mapping only) is refused by name and runs on",
  ignore: !java,
  fn: withTargets(async () => {
    const work = await tempDir("cryo-java-");
    const t = await startTarget(java!, ["-Xmx64m", "-XX:+UseSerialGC", await javaCounter(work)]);
    await waitForCount(t, 3, 60000);
    const r = await runCli(["dump", String(t.pid), "--dir", `${work}/image`]);
    assertOneLineError(
      r,
      1,
      new RegExp(`FLOCK WRITE lock on /tmp/hsperfdata_[^/]+/${t.pid}`),
      "dump",
    );
    const before = counterLines(t).length;
    await waitForCount(t, before + 3);
    assert.ok(!pathExists(`${work}/image`), "no image left");
  }),
});

Deno.test(
  "a python3 inotify watcher (ctypes) reports files created after the restore",
  withTargets(async () => {
    const work = await tempDir("cryo-inotify-");
    await Deno.mkdir(`${work}/watched`);
    const t = await startTarget("/usr/bin/python3", [
      "-c",
      `import ctypes, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init1(0)
wd = libc.inotify_add_watch(fd, sys.argv[1].encode(), 0x100 | 0x200)  # IN_CREATE | IN_DELETE
print("watching", wd, flush=True)
while True:
    buf = os.read(fd, 4096)
    at = 0
    while at < len(buf):
        w, mask, cookie, n = struct.unpack_from("iIII", buf, at)
        name = buf[at + 16:at + 16 + n].rstrip(b"\\0").decode()
        print("create" if mask & 0x100 else "delete", w, name, flush=True)
        at += 16 + n
`,
      `${work}/watched`,
    ]);
    await t.waitFor(/watching 1\n/);
    await Deno.writeTextFile(`${work}/watched/before`, "");
    await t.waitFor(/create 1 before\n/);
    await dumpKillRestore(t);
    await Deno.writeTextFile(`${work}/watched/after`, "");
    await Deno.remove(`${work}/watched/before`);
    await t.waitFor(/create 1 after\ndelete 1 before\n/);
    assert.equal(t.poll(), undefined, `the restored watcher exited:\n${t.output()}`);
  }),
);

Deno.test(
  "a python3 multiprocessing Pool (forked workers, pipes, POSIX semaphores) goes on after restore",
  withTargets(async () => {
    const work = await tempDir("cryo-mp-");
    const fifo = `${work}/in`;
    const mk = await new Deno.Command("mkfifo", { args: [fifo] }).output();
    assert.equal(mk.code, 0);
    const input = await Deno.open(fifo, { read: true, write: true });
    try {
      const t = await startTarget("/usr/bin/python3", [
        "-c",
        `import multiprocessing as mp, sys, tempfile
tempfile.tempdir = ${JSON.stringify(work)}  # its pymp-* directory in the test's own
def square(x):
    return x * x
if __name__ == "__main__":
    mp.set_start_method("fork")
    state = []
    with mp.Pool(2) as pool:
        for line in sys.stdin:
            n = int(line)
            state.append(sum(pool.map(square, range(n))))
            print("sum", n, state, flush=True)
`,
      ], { stdin: fifo });
      const say = (s: string) => input.write(new TextEncoder().encode(s + "\n"));
      await say("10");
      await t.waitFor(/sum 10 \[285\]\n/);
      const { tree } = await dumpKillRestore(t);
      assert.ok(tree.pids.length >= 3, `restored ${tree.pids}`);
      await say("20");
      await t.waitFor(/sum 20 \[285, 2470\]\n/);
      assert.equal(t.poll(), undefined, `the restored pool exited:\n${t.output()}`);
    } finally {
      input.close();
    }
  }),
);

Deno.test(
  "shared anonymous memory keeps the pages only forked children wrote (PostgreSQL's shared buffers)",
  withTargets(async () => {
    const work = await tempDir("cryo-shmem-");
    const t = await startTarget("/usr/bin/python3", [
      "-c",
      `import mmap, os, sys, time
m = mmap.mmap(-1, 64 * 4096)  # MAP_SHARED | MAP_ANONYMOUS, not touched here
gone = os.fork()
if gone == 0:
    m[8 * 4096:8 * 4096 + 5] = b"gone!"  # written by a child that exits
    os._exit(0)
os.waitpid(gone, 0)
kid = os.fork()
if kid == 0:
    m[20 * 4096:20 * 4096 + 6] = b"alive!"  # written by a child that lives on
    m[30 * 4096] = 1
    while not os.path.exists(sys.argv[1] + "/go"):
        time.sleep(0.02)
    print("child sees", bytes(m[8 * 4096:8 * 4096 + 5]), bytes(m[20 * 4096:20 * 4096 + 6]), flush=True)
    os._exit(0)
while m[30 * 4096] == 0:  # (maps page 30 here, not 8 or 20)
    time.sleep(0.01)
print("ready", kid, flush=True)
while not os.path.exists(sys.argv[1] + "/go"):
    time.sleep(0.02)
os.waitpid(kid, 0)
print("parent sees", bytes(m[8 * 4096:8 * 4096 + 5]), bytes(m[20 * 4096:20 * 4096 + 6]), flush=True)
`,
      work,
    ]);
    const kid = Number((await t.waitFor(/^ready (\d+)$/m))[1]);
    adoptPid(kid);
    const { tree } = await dumpKillRestore(t);
    assert.deepEqual([...tree.pids].sort(), [t.pid, kid].sort());
    await Deno.writeTextFile(`${work}/go`, "");
    await t.waitFor(/^parent sees/m);
    assert.match(t.output(), /^child sees b'gone!' b'alive!'$/m);
    assert.match(t.output(), /^parent sees b'gone!' b'alive!'$/m);
  }),
);

Deno.test(
  "tail -f (inotify and a file offset) prints only the lines appended after the restore",
  withTargets(async () => {
    const work = await tempDir("cryo-tail-");
    const log = `${work}/log`;
    await Deno.writeTextFile(log, "one\n");
    const t = await startTarget("/usr/bin/tail", ["-n", "+1", "-f", log]);
    await t.waitFor(/^one\n$/);
    await Deno.writeTextFile(log, "two\n", { append: true });
    await t.waitFor(/^one\ntwo\n$/);
    await dumpKillRestore(t);
    await Deno.writeTextFile(log, "three\n", { append: true });
    await t.waitFor(/three\n/);
    assert.equal(t.output(), "one\ntwo\nthree\n");
    assert.equal(t.poll(), undefined, `the restored tail exited:\n${t.output()}`);
  }),
);

const bc = ["/usr/bin/bc"].find((p) => {
  try {
    return Deno.statSync(p).isFile;
  } catch {
    return false;
  }
});

Deno.test({
  name: "bc keeps its variables and its input (a FIFO) across the checkpoint",
  ignore: !bc,
  fn: withTargets(async () => {
    const work = await tempDir("cryo-bc-");
    const fifo = `${work}/in`;
    assert.equal((await new Deno.Command("mkfifo", { args: [fifo] }).output()).code, 0);
    const input = await Deno.open(fifo, { read: true, write: true });
    try {
      const t = await startTarget(bc!, ["-q"], { stdin: fifo });
      const say = (s: string) => input.write(new TextEncoder().encode(s + "\n"));
      await say("scale=5; x = 6 * 7\ndefine f(n) {\nreturn (n * x)\n}");
      // Read by then, or still in the FIFO: the image holds it either way (its output to a file
      // is buffered until it exits).
      await sleep(300);
      await dumpKillRestore(t);
      await say("f(2)\nx / 8\nquit");
      const st = await t.wait();
      assert.equal(st.kind, "exited");
      assert.equal(t.output(), "84\n5.25000\n");
    } finally {
      input.close();
    }
  }),
});
