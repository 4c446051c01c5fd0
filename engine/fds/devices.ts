/**
 * Character devices whose open file holds state that reopening the path
 * does not give back. cryo restores a device fd by opening its path again
 * (engine/fds/regular.ts), which is exact for devices with nothing of
 * their own per open file (/dev/null, /dev/urandom, /dev/kvm itself, a
 * loop device, ...). These are refused at dump by name
 * (`fd.device-stateful`), each with what would be lost:
 *
 * - /dev/kmsg opened for reading: each open file has its own read position
 *   in the kernel log (a new one starts at the oldest record: every message
 *   read again); one only written to is reopened;
 * - /dev/net/tun: the interface the fd was attached to (TUNSETIFF; a
 *   non-persistent interface goes with the dumped process);
 * - /dev/fuse: the connection to a FUSE mount;
 * - /dev/uinput, /dev/uhid: the virtual device the fd created;
 * - /dev/cpu_dma_latency and the other PM QoS devices: the latency request
 *   the fd holds while open;
 * - watchdogs: opening one arms it, and closing it without the magic
 *   character lets the machine reset;
 * - vhost and vfio devices: a device or a virtual machine's queues.
 *
 * Misc devices (major 10) are named by their sysfs link, as their minors
 * may be dynamic.
 *
 * @module
 */

import { basename } from "../path.ts";
import type { ProcessImage } from "../model.ts";
import type { Refusals } from "../support.ts";
import { devMajor, devMinor } from "../proc/fds.ts";

const MISC_MAJOR = 10;
const O_ACCMODE = 3, O_WRONLY = 1;

/** Misc device names with state of their own per open file -> what reopening loses. */
const STATEFUL_MISC: Readonly<Record<string, string>> = {
  tun: "the network interface it is attached to",
  fuse: "its connection to a FUSE mount",
  uinput: "the input device it created",
  uhid: "the HID device it created",
  cpu_dma_latency: "the latency request it holds",
  network_latency: "the latency request it holds",
  network_throughput: "the throughput request it holds",
  "vhost-net": "its virtio queues",
  "vhost-vsock": "its virtio queues",
  vfio: "its device container",
  watchdog: "the armed watchdog (closing it may reset the machine)",
};

/** What reopening device `rdev` would lose, with its name; undefined when nothing. */
export function statefulDevice(rdev: number): { name: string; lost: string } | undefined {
  const major = devMajor(rdev), minor = devMinor(rdev);
  if (major === 1 && minor === 11) {
    return { name: "kmsg", lost: "its read position in the kernel log" };
  }
  let link: string;
  try {
    link = Deno.readLinkSync(`/sys/dev/char/${major}:${minor}`);
  } catch {
    return undefined;
  }
  const name = basename(link);
  if (link.includes("/watchdog/") || /^watchdog\d*$/.test(name)) {
    return { name, lost: STATEFUL_MISC.watchdog };
  }
  if (major !== MISC_MAJOR) return undefined;
  const lost = STATEFUL_MISC[name];
  return lost ? { name, lost } : undefined;
}

/** Dump: refuses every fd of a character device in {@link statefulDevice}'s list. */
export function refuseStatefulDevices(images: readonly ProcessImage[], refusals: Refusals): void {
  for (const p of images) {
    for (const f of p.fds) {
      if (f.excluded || f.kind !== "chardev" || f.file?.rdev === undefined) continue;
      const dev = statefulDevice(f.file.rdev);
      // Written only (a daemon logging to /dev/kmsg), the log has no position of its own to lose.
      if (!dev || (dev.name === "kmsg" && (f.flags & O_ACCMODE) === O_WRONLY)) continue;
      refusals.use(
        "fd.device-stateful",
        `process ${p.pid} fd ${f.fd} (${f.target})`,
        `${dev.name}: reopening it would lose ${dev.lost}`,
      );
    }
  }
}
