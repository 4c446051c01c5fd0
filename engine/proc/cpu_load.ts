/**
 * How busy the machine's CPUs are, for choices that only pay with an idle
 * CPU (engine/dump/copy_lanes.ts): the online CPUs, the 1-minute load
 * average, and the CPU pressure of the last 10 seconds (PSI "some": the
 * share of time some runnable task waited for a CPU; it follows the load
 * faster than the load average does).
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
}

/** Reads {@link CpuLoad} (nothing that cannot be read is guessed: 1 CPU, no pressure). */
export function cpuLoad(): CpuLoad {
  const cpus = navigator.hardwareConcurrency ?? 1;
  let load1 = 0;
  try {
    load1 = Deno.loadavg()[0];
  } catch { /* no permission */ }
  let pressure10: number | undefined;
  try {
    const m = Deno.readTextFileSync("/proc/pressure/cpu").match(/^some avg10=([\d.]+)/m);
    if (m) pressure10 = Number(m[1]);
  } catch { /* no PSI */ }
  return { cpus, load1, ...(pressure10 !== undefined ? { pressure10 } : {}) };
}
