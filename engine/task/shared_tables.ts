/**
 * Fd tables and fs info (cwd, root, umask) shared by processes of the tree
 * (clone with CLONE_FILES or CLONE_FS, not CLONE_THREAD), found at dump with
 * kcmp(KCMP_FILES / KCMP_FS) while the tree is frozen.
 *
 * A process sharing its parent's table joins it: the image marks it
 * (`sharesParentFiles`, `sharesParentFs`) and restore forks it into its
 * parent's table again. Tables shared any other way (two processes whose
 * sharing does not run through parent-child links, as when a process
 * shares with a grandparent after the parent between them unshared) are
 * refused by name (`task.shared-files`, `task.shared-fs`).
 *
 * An fd table: the child's `fds` are emptied (they are the parent's, which
 * the parent restores once). exec unshares an fd table, so such a child is
 * restored by inheritance (engine/memory/inherit.ts: its parent forks it
 * once its memory is in, with CLONE_FILES, never exec'ed). The engine holds
 * the parent at that fork's event stop until the child's program is done
 * (engine/restore/session.ts): the two programs never work on the one
 * table at once, and the transfer fds the parent made for the tree
 * (engine/fds/shared.ts) are still there when the child forks its own
 * children. The child has no fd phase; the parent's, after it, puts every
 * fd in.
 *
 * Fs info survives exec: the parent forks such a child with CLONE_FS (an
 * exec'ed child or one inheriting memory alike), and each program sets
 * the same cwd and umask into the one fs_struct. A changed root is refused
 * (the second chroot would resolve its path inside the first).
 *
 * @module
 */

import { rawSyscall } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";
import type { ProcessImage } from "../model.ts";
import type { Refusals, SupportId } from "../support.ts";

const KCMP_FILES = 2;
const KCMP_FS = 3;

/** clone flag: share the fd table. */
export const CLONE_FILES = 0x400n;
/** clone flag: share cwd, root and umask. */
export const CLONE_FS = 0x200n;

/** How two processes are compared: kcmp's `type` and the two ways of sharing. */
type Compare = (a: number, b: number) => boolean;

const kcmpSame = (type: number): Compare => (a, b) => rawSyscall(SYS.kcmp, a, b, type, 0, 0) === 0n;

/** One kind of shared table. */
interface TableKind {
  id: SupportId;
  what: string;
  same: Compare;
  /** Why `child` cannot join its parent's table (undefined: it can). */
  unjoinable(child: ProcessImage): string | undefined;
  join(child: ProcessImage): void;
}

/**
 * Marks the processes of `images` (the whole tree) that share their
 * parent's fd table or fs info, empties the `fds` of those sharing an fd
 * table, and refuses the sharing that does not run through parent-child
 * links. `same` compares two processes (kcmp by default; tests pass their
 * own).
 */
export function planSharedTables(
  images: readonly ProcessImage[],
  refusals: Refusals,
  same: { files: Compare; fs: Compare } = { files: kcmpSame(KCMP_FILES), fs: kcmpSame(KCMP_FS) },
): void {
  const kinds: TableKind[] = [
    {
      id: "task.shared-files",
      what: "share one fd table",
      same: same.files,
      unjoinable: () => undefined,
      join(child) {
        child.sharesParentFiles = true;
        child.fds = [];
      },
    },
    {
      id: "task.shared-fs",
      what: "share cwd, root and umask",
      same: same.fs,
      unjoinable: (child) =>
        child.root !== "/" ? `the shared root is ${child.root}, not /` : undefined,
      join(child) {
        child.sharesParentFs = true;
      },
    },
  ];
  const byPid = new Map(images.map((p) => [p.pid, p]));
  const depth = (p: ProcessImage): number => {
    let d = 0;
    for (let q = byPid.get(p.ppid); q; q = byPid.get(q.ppid)) d++;
    return d;
  };
  const ordered = [...images].sort((a, b) => depth(a) - depth(b));
  for (const kind of kinds) {
    // The process whose table each one uses: itself, or its parent's owner when it joined.
    const owner = new Map<number, number>();
    for (const p of ordered) {
      const parent = byPid.get(p.ppid);
      if (parent && kind.same(parent.pid, p.pid)) {
        const why = kind.unjoinable(p);
        if (why === undefined) {
          kind.join(p);
          owner.set(p.pid, owner.get(parent.pid) ?? parent.pid);
          continue;
        }
        refusals.use(kind.id, `processes ${parent.pid} and ${p.pid} ${kind.what}`, why);
        owner.set(p.pid, owner.get(parent.pid) ?? parent.pid); // refused once, not again below
        continue;
      }
      owner.set(p.pid, p.pid);
    }
    for (let i = 0; i < ordered.length; i++) {
      for (let j = 0; j < i; j++) {
        const [a, b] = [ordered[j].pid, ordered[i].pid];
        if (owner.get(a) === owner.get(b) || !kind.same(a, b)) continue;
        refusals.use(kind.id, `processes ${a} and ${b} ${kind.what}`, "not through a parent");
      }
    }
  }
}
