/**
 * How busy the machine's CPUs are, for choices that only pay with an idle
 * CPU (engine/dump/copy_lanes.ts): the online CPUs, the 1-minute load
 * average, the CPU pressure of the last 10 seconds (PSI "some": the share
 * of time some runnable task waited for a CPU; it follows the load faster
 * than the load average does), and the same pressure since this module
 * was loaded (the stall time PSI counts, "total=" in microseconds, over
 * the time between: what the machine does now, at the start of the
 * command, not what it did in the last seconds).
 *
 * @module
 */

/** A snapshot of the CPUs' load. */
export interface CpuLoad {
  /** CPUs this process may run on. */
  cpus: number;
  /** 1-minute load average. */
  load1: number;
  /** /proc/pressure/cpu "some avg10" (percent), or undefined without PSI. */
  pressure10?: number;
  /**
   * /proc/pressure/cpu "some" (percent) from this module's load until now,
   * or undefined without PSI, when less than {@link RECENT_MIN_MS} passed,
   * or more than {@link RECENT_MAX_MS} (a long-lived process: then it is no
   * more recent than the 10-second average).
   */
  pressureRecent?: number;
}

/** Shortest span over which {@link CpuLoad.pressureRecent} is given. */
export const RECENT_MIN_MS = 20;
/** Longest span over which {@link CpuLoad.pressureRecent} is given. */
export const RECENT_MAX_MS = 10_000;

/** "some avg10" and "total" (µs) of /proc/pressure/cpu, or undefined without PSI. */
function readPressure(): { avg10: number; total: number } | undefined {
  try {
    const m = Deno.readTextFileSync("/proc/pressure/cpu").match(
      /^some avg10=([\d.]+) .*total=(\d+)/m,
    );
    return m ? { avg10: Number(m[1]), total: Number(m[2]) } : undefined;
  } catch {
    return undefined; // no PSI, or no permission
  }
}

const loaded = { at: performance.now(), pressure: readPressure() };

/** Reads {@link CpuLoad} (nothing that cannot be read is guessed: 1 CPU, no pressure). */
export function cpuLoad(): CpuLoad {
  const cpus = navigator.hardwareConcurrency ?? 1;
  let load1 = 0;
  try {
    load1 = Deno.loadavg()[0];
  } catch { /* no permission */ }
  const now = readPressure();
  const out: CpuLoad = { cpus, load1 };
  if (now) out.pressure10 = now.avg10;
  const ms = performance.now() - loaded.at;
  if (now && loaded.pressure && ms >= RECENT_MIN_MS && ms <= RECENT_MAX_MS) {
    out.pressureRecent = Math.min(100, (now.total - loaded.pressure.total) / 10 / ms);
  }
  return out;
}
