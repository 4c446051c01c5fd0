/**
 * What smaps confirmed of the BPF iterator's decoding of vm_flags
 * (engine/proc/vma_flags_bpf.ts), remembered for the rest of the boot.
 *
 * The decoding table maps the running kernel's VM_* bits to smaps'
 * two-letter codes; the bits are constants of the kernel that runs, so a bit
 * whose decoding an smaps read confirmed stays confirmed until the machine
 * boots again. The memo is keyed by /proc/sys/kernel/random/boot_id and kept
 * in cryo's cache directory (`CRYO_CACHE_DIR`, else `$XDG_CACHE_HOME/cryo` or
 * `~/.cache/cryo`), in a file that only the user cryo runs as may write; any
 * doubt (another boot, another owner, a file group- or world-writable, a
 * malformed file) and it is not used. It also keeps the areas that smaps
 * lists and the iterator does not ([vsyscall]), as smaps showed them.
 *
 * @module
 */

import type { SmapsArea } from "./smaps_flags.ts";

/** Bits confirmed on this boot, and the areas only smaps lists, as it showed them. */
export interface ConfirmedDecoding {
  /** Every vm_flags bit whose decoding smaps confirmed. */
  bits: bigint;
  /** Areas smaps lists that the iterator does not, with their VmFlags. */
  gate: SmapsArea[];
}

interface MemoFile {
  boot: string;
  bits: string;
  gate: {
    start: string;
    end: string;
    perms: string;
    offset: string;
    dev: string;
    inode: number;
    path: string;
    vmFlags: string[];
  }[];
}

function memoDir(): string | undefined {
  const own = Deno.env.get("CRYO_CACHE_DIR");
  if (own) return `${own}/vmflags`;
  const home = Deno.env.get("HOME");
  const base = Deno.env.get("XDG_CACHE_HOME") || (home ? `${home}/.cache` : undefined);
  return base ? `${base}/cryo/vmflags` : undefined;
}

function bootId(): string | undefined {
  try {
    return Deno.readTextFileSync("/proc/sys/kernel/random/boot_id").trim() || undefined;
  } catch {
    return undefined;
  }
}

/** Whether `path` belongs to this user and only this user may write it. */
function ownedAndPrivate(path: string): boolean {
  const st = Deno.lstatSync(path);
  return st.uid === Deno.uid() && ((st.mode ?? 0o777) & 0o022) === 0;
}

/** What was confirmed earlier on this boot, or undefined (none, or not to be trusted). */
export function recallConfirmed(): ConfirmedDecoding | undefined {
  if (Deno.env.get("CRYO_VMFLAGS_MEMO") === "0") return undefined;
  const dir = memoDir(), boot = bootId();
  if (!dir || !boot) return undefined;
  const path = `${dir}/${boot}.json`;
  try {
    if (!ownedAndPrivate(dir) || !ownedAndPrivate(path)) return undefined;
    const memo = JSON.parse(Deno.readTextFileSync(path)) as MemoFile;
    if (memo.boot !== boot || !/^0x[0-9a-f]+$/.test(memo.bits)) return undefined;
    return {
      bits: BigInt(memo.bits),
      gate: memo.gate.map((g) => ({
        start: BigInt(g.start),
        end: BigInt(g.end),
        perms: g.perms,
        offset: BigInt(g.offset),
        dev: g.dev,
        inode: g.inode,
        path: g.path,
        deleted: false,
        vmFlags: [...g.vmFlags],
      })),
    };
  } catch {
    return undefined;
  }
}

/**
 * Remembers `confirmed` for the rest of this boot (written to a temporary
 * file and renamed over the memo). Best effort: never throws.
 */
export function rememberConfirmed(confirmed: ConfirmedDecoding): void {
  if (Deno.env.get("CRYO_VMFLAGS_MEMO") === "0") return;
  const dir = memoDir(), boot = bootId();
  if (!dir || !boot) return;
  const memo: MemoFile = {
    boot,
    bits: `0x${confirmed.bits.toString(16)}`,
    gate: confirmed.gate.map((g) => ({
      start: `0x${g.start.toString(16)}`,
      end: `0x${g.end.toString(16)}`,
      perms: g.perms,
      offset: `0x${g.offset.toString(16)}`,
      dev: g.dev,
      inode: g.inode,
      path: g.path,
      vmFlags: g.vmFlags,
    })),
  };
  const tmp = `${dir}/.${boot}.${Deno.pid}.tmp`;
  try {
    Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
    if (!ownedAndPrivate(dir)) return;
    Deno.writeTextFileSync(tmp, JSON.stringify(memo), { mode: 0o600 });
    Deno.renameSync(tmp, `${dir}/${boot}.json`);
  } catch {
    try {
      Deno.removeSync(tmp);
    } catch { /* not there */ }
  }
}
