/**
 * Reader of /proc/<pid>/mountinfo.
 *
 * @module
 */

import { ProcFormatError } from "./errors.ts";
import { procPath, readProcText } from "./io.ts";

/** One mount as seen by a process. */
export interface MountInfo {
  /** Unique mount id (matches fdinfo mnt_id). */
  mountId: number;
  /** Mount id of the parent mount. */
  parentId: number;
  /** st_dev major of files on this mount. */
  major: number;
  /** st_dev minor. */
  minor: number;
  /** Root of the mount within its filesystem. */
  root: string;
  /** Mount point relative to the process's root. */
  mountPoint: string;
  /** Per-mount options ("rw", "relatime", ...). */
  mountOptions: string[];
  /** Optional fields ("shared:1", "master:2", ...). */
  optionalFields: string[];
  /** Filesystem type ("ext4", "proc", ...). */
  fsType: string;
  /** Mount source ("/dev/vda", "proc", "none"). */
  source: string;
  /** Per-superblock options. */
  superOptions: string[];
}

/** Undoes the kernel's octal escapes ("\040" for space, "\011", "\012", "\134"). */
export function unescapeMountField(text: string): string {
  return text.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

function options(text: string | undefined): string[] {
  return text === undefined || text === "" ? [] : text.split(",");
}

/** Parses one mountinfo line. */
export function parseMountInfoLine(line: string, pid = 0, path = "mountinfo"): MountInfo {
  const f = line.split(" ");
  const sep = f.indexOf("-", 6);
  if (f.length < 10 || sep < 0 || sep + 2 >= f.length) {
    throw new ProcFormatError(pid, path, `bad mountinfo line ${JSON.stringify(line)}`);
  }
  const [major, minor] = f[2].split(":").map(Number);
  return {
    mountId: Number(f[0]),
    parentId: Number(f[1]),
    major,
    minor,
    root: unescapeMountField(f[3]),
    mountPoint: unescapeMountField(f[4]),
    mountOptions: options(f[5]),
    optionalFields: f.slice(6, sep),
    fsType: f[sep + 1],
    source: unescapeMountField(f[sep + 2]),
    superOptions: options(f[sep + 3]),
  };
}

/** Parses the text of a mountinfo file. */
export function parseMountInfo(text: string, pid = 0, path = "mountinfo"): MountInfo[] {
  return text.split("\n").filter((l) => l !== "").map((l) => parseMountInfoLine(l, pid, path));
}

/** Reads /proc/<pid>/mountinfo. */
export function readMountInfo(pid: number): MountInfo[] {
  return parseMountInfo(readProcText(pid, "mountinfo"), pid, procPath(pid, "mountinfo"));
}
