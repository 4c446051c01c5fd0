/**
 * The background server of `cryo restore --lazy --detach`
 * (engine/memory/lazy_serve.ts `handOff`): started by cryo with the path
 * of its serving state, it takes every descriptor from cryo, writes "R"
 * on its stdout (a pipe cryo waits on, which then exits), and serves the
 * tree's memory until every page is in. Its own session, so the
 * terminal's signals do not reach it; the watchdog still kills the tree
 * if it dies.
 *
 * @module
 */

import { rawSyscall } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";
import { LazyServer } from "./lazy_serve.ts";

/** Takes over, says so, serves until done. */
function main(): void {
  rawSyscall(SYS.setsid);
  const server = LazyServer.resume(Deno.args[0]);
  rawSyscall(SYS.write, 1, new Uint8Array([0x52 /* "R" */]), 1);
  rawSyscall(SYS.close, 1);
  server.serve();
  Deno.exit(server.failure ? 1 : 0);
}

if (import.meta.main) main();
