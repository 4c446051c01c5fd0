/**
 * The restore's inline checksum pass (engine/restore/verify_inline.ts) on
 * plain files: the same CRC as the image writer's `checksumFile` across
 * window boundaries, a mismatch named by path, a missing or shrunk file
 * refused with one message, and nothing to do without checksums; each on
 * cryo's main thread, with the windows folded on another thread, and (the
 * default where syscall tables run) read and folded by syscall tables
 * (engine/restore/verify_table.ts), at their chunk and run edges.
 */

import assert from "node:assert/strict";
import { ImageVerifier, TABLE_MAX_BYTES } from "../engine/restore/verify_inline.ts";
import { checksumFile } from "../engine/image/writer.ts";
import { ImageFormatError } from "../engine/image/errors.ts";
import { MappedFile } from "../ffi/file_window.ts";

const MiB = 1 << 20;

/** A file of `size` bytes of a pattern, in a fresh temporary directory. */
async function patternFile(size: number): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "cryo-verify-" });
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 131 + (i >> 12)) & 0xff;
  const path = `${dir}/img.elf`;
  await Deno.writeFile(path, bytes);
  return path;
}

async function removeFileDir(path: string): Promise<void> {
  await Deno.remove(path.slice(0, path.lastIndexOf("/")), { recursive: true });
}

Deno.test("inline verify: same CRC as checksumFile over several windows, step by step", async () => {
  for (const size of [0, 4096, 8 * MiB, 8 * MiB + 4096, 20 * MiB + 123]) {
    const path = await patternFile(size);
    try {
      const checksum = await checksumFile(path);
      const v = new ImageVerifier([{ path, checksum }, { path, checksum }], { background: false });
      let steps = 0;
      while (v.step()) steps++;
      assert.ok(steps >= Math.ceil(size / (8 * MiB)), `size ${size}: ${steps} steps`);
      assert.equal(v.finish(), undefined, `size ${size}`);
    } finally {
      await removeFileDir(path);
    }
  }
});

/** How many lines of this process's /proc/self/maps map `path`. */
function mappedLines(path: string): number {
  return Deno.readTextFileSync("/proc/self/maps").split("\n").filter((l) => l.endsWith(` ${path}`))
    .length;
}

Deno.test("background verify: same CRC as checksumFile, across windows and files", async () => {
  for (const size of [0, 4096, 4096 + 40, 16 * MiB, 16 * MiB + 4096 + 8, 70 * MiB + 123]) {
    const path = await patternFile(size);
    try {
      const checksum = await checksumFile(path);
      // Mapped windows, syscall tables (verify_table.ts), and the default for the size.
      for (const table of [false, true, undefined]) {
        const v = new ImageVerifier([{ path, checksum }, { path, checksum }], { table });
        v.step(); // the first window folds on another thread
        assert.equal(v.finish(), undefined, `size ${size}, table ${table}`);
        // A wrong checksum on the second file is found after the first one matched.
        const bad = new ImageVerifier([{ path, checksum }, { path, checksum: "crc32:12345678" }], {
          table,
        });
        assert.match(String(bad.finish()?.message), /differs from the manifest's crc32:12345678/);
        // Given up while a window folds: close() waits for the fold before unmapping.
        const given = new ImageVerifier([{ path, checksum }], { table });
        given.step();
        given.close();
        // Every window was unmapped (by the fold's thread, for the mapped windows).
        assert.equal(mappedLines(path), 0, `size ${size}, table ${table}`);
      }
    } finally {
      await removeFileDir(path);
    }
  }
});

Deno.test("background verify: images over TABLE_MAX_BYTES in all, by mapped windows, same verdicts", async () => {
  // A sparse file just over the tables' size: the default path checks it and finds a wrong byte.
  const dir = await Deno.makeTempDir({ prefix: "cryo-verify-" });
  const path = `${dir}/big.elf`;
  try {
    await Deno.writeFile(path, new Uint8Array(0));
    await Deno.truncate(path, TABLE_MAX_BYTES + 4096 + 8);
    const checksum = await checksumFile(path);
    assert.equal(new ImageVerifier([{ path, checksum }]).finish(), undefined);
    const f = await Deno.open(path, { write: true });
    await f.seek(TABLE_MAX_BYTES - 3, Deno.SeekMode.Start);
    await f.write(new Uint8Array([1]));
    f.close();
    assert.match(String(new ImageVerifier([{ path, checksum }]).finish()?.message), /differs/);
    assert.equal(mappedLines(path), 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("background verify: a file that shrinks before its next window is refused", async () => {
  for (const table of [false, true]) {
    const path = await patternFile(40 * MiB);
    try {
      const checksum = await checksumFile(path);
      const v = new ImageVerifier([{ path, checksum }], { table });
      assert.equal(v.step(), true); // the first window (or run) reading, the file open at 40 MiB
      await Deno.truncate(path, 36 * MiB); // the window being read is still whole
      const problem = v.finish();
      assert.match(String(problem?.message), /shrank from 41943040 to 37748736 bytes/);
    } finally {
      await removeFileDir(path);
    }
  }
});

Deno.test("inline verify: a mismatch names the file and both checksums", async () => {
  const path = await patternFile(9 * MiB);
  try {
    const good = await checksumFile(path);
    const v = new ImageVerifier([{ path, checksum: "crc32:00000000" }]);
    const problem = v.finish();
    assert.ok(problem instanceof ImageFormatError);
    assert.match(problem.message, new RegExp(`${good} differs from the manifest's crc32:00000000`));
    assert.ok(problem.message.includes(path));
    // No checksum recorded: nothing is read.
    assert.equal(new ImageVerifier([{ path: "/nonexistent", checksum: "" }]).finish(), undefined);
  } finally {
    await removeFileDir(path);
  }
});

Deno.test("inline verify: a missing file, and a file that shrinks between windows", async () => {
  const missing = new ImageVerifier([{ path: "/nonexistent/x.elf", checksum: "crc32:1" }]).finish();
  assert.match(String(missing?.message), /^cannot verify the image: /);
  const dir = await Deno.makeTempDir({ prefix: "cryo-verify-" });
  try {
    const notFile = new ImageVerifier([{ path: dir, checksum: "crc32:1" }]).finish();
    assert.match(String(notFile?.message), /^cannot verify the image: .* is not a regular file/);
  } finally {
    await Deno.remove(dir);
  }
  const path = await patternFile(16 * MiB);
  try {
    const checksum = await checksumFile(path);
    const v = new ImageVerifier([{ path, checksum }], { background: false });
    assert.equal(v.step(), true); // first window read, the file still open
    await Deno.truncate(path, 4 * MiB);
    const problem = v.finish();
    assert.match(String(problem?.message), /shrank from 16777216 to 4194304 bytes/);
    using f = MappedFile.open(path);
    assert.equal(f.size, 4 * MiB);
  } finally {
    await removeFileDir(path);
  }
});

Deno.test("table verify: the chained folds give checksumFile's CRC at every chunk edge", async () => {
  // Sizes around the table's chunk (1 MiB) and run (64 MiB) edges, a last chunk too short to
  // fold alone (1 MiB + 16 and + 32 bytes), files under the fold's 64 bytes, several files.
  const sizes = [0, 15, 63, 64, 65, MiB - 16, MiB, MiB + 16, MiB + 32, MiB + 48, 3 * MiB + 4095];
  const paths: string[] = [];
  try {
    const files = [];
    for (const size of sizes) {
      const path = await patternFile(size);
      paths.push(path);
      files.push({ path, checksum: await checksumFile(path) });
    }
    const v = new ImageVerifier(files);
    assert.equal(v.finish(), undefined);
    // One byte changed in the middle of a chunk of one file: that file is named.
    const victim = paths[sizes.indexOf(MiB + 48)];
    const f = await Deno.open(victim, { write: true });
    await f.seek(MiB - 5, Deno.SeekMode.Start);
    await f.write(new Uint8Array([0x5a]));
    f.close();
    const problem = new ImageVerifier(files).finish();
    assert.ok(problem instanceof ImageFormatError);
    assert.ok(problem.message.includes(victim), problem.message);
    assert.match(problem.message, /differs from the manifest's/);
    // The same files through the mapped windows (table: false) agree.
    assert.ok(new ImageVerifier(files, { table: false }).finish() instanceof ImageFormatError);
  } finally {
    for (const p of paths) await removeFileDir(p);
  }
});

Deno.test("table verify: two runs, given up between them, and stepped to the end", async () => {
  // Runs of 8 MiB: 8 MiB + 1 MiB is one run (under a quarter of a run left), one start, then
  // the answer; 10 MiB + 7 bytes is two.
  const runBytes = 8 * MiB;
  const one = await patternFile(9 * MiB);
  try {
    const v = new ImageVerifier([{ path: one, checksum: await checksumFile(one) }], {
      tableRunBytes: runBytes,
    });
    assert.equal(v.step(), true);
    let more = 0;
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      if (v.step()) more++;
      else if (more) break;
      else await new Promise((r) => setTimeout(r, 1));
    }
    assert.equal(more, 1, "the answer, with no second run");
    assert.equal(v.finish(), undefined);
  } finally {
    await removeFileDir(one);
  }
  const path = await patternFile(10 * MiB + 7);
  try {
    const checksum = await checksumFile(path);
    const v = new ImageVerifier([{ path, checksum }], { tableRunBytes: runBytes });
    assert.equal(v.step(), true); // the first run (8 MiB) reads and folds on another thread
    v.close(); // waits for it, closes the file
    assert.ok(v.finish() !== undefined, "a verifier given up does not answer that all matched");
    // Polled as the session does: two runs started, then the answer (three steps that did
    // something), each only once the run before it is done.
    const w = new ImageVerifier([{ path, checksum }], { tableRunBytes: runBytes });
    let steps = 0;
    const deadline = Date.now() + 60_000;
    while (steps < 3 && Date.now() < deadline) {
      if (w.step()) steps++;
      else await new Promise((r) => setTimeout(r, 1));
    }
    assert.equal(steps, 3);
    assert.equal(w.step(), false);
    assert.equal(w.finish(), undefined);
  } finally {
    await removeFileDir(path);
  }
});
