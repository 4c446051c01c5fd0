/**
 * engine/dump/site_memo.ts: the safe injection sites (ffi/safe_inject.ts)
 * found from their places in the per-boot memo. A place found in one process
 * gives the very sites a search finds in another process mapping the same
 * files; a wrong place is never used (the search runs and its pair is
 * remembered instead). An injection session given the frozen areas takes
 * the pair found before (looked up in the areas: engine/dump/injected.ts),
 * the same as a search; a pair no longer in an executable area is not taken.
 * The search before a dump's freeze takes the maps the dump's estimate has
 * just counted (no read of its own; the count's bytes left for the VmFlags'
 * check), and finds what it finds from a read of its own.
 */

import assert from "node:assert/strict";
import { findSafeSites, rememberedSites } from "../ffi/safe_inject.ts";
import { InjectionSession } from "../engine/dump/injected.ts";
import { countMappings, readMaps, takeCountedMaps } from "../engine/proc/maps.ts";
import {
  addressIn,
  execAreas,
  findSafeSitesRemembered,
  placeOf,
  siteMapsReads,
} from "../engine/dump/site_memo.ts";
import { recallSafeSites, rememberSafeSites } from "../engine/proc/vm_flags_memo.ts";
import { startTarget, withTargets } from "./helpers/targets.ts";

/** Runs `fn` with the per-boot memo in a fresh cache directory. */
async function withFreshMemo(fn: () => Promise<void>): Promise<void> {
  const dir = Deno.makeTempDirSync({ prefix: "cryo-site-memo-" });
  const before = Deno.env.get("CRYO_CACHE_DIR");
  Deno.env.set("CRYO_CACHE_DIR", dir);
  try {
    await fn();
  } finally {
    if (before === undefined) Deno.env.delete("CRYO_CACHE_DIR");
    else Deno.env.set("CRYO_CACHE_DIR", before);
    Deno.removeSync(dir, { recursive: true });
  }
}

Deno.test(
  "site memo: places found in one process give another's sites; a wrong place is not used",
  withTargets(() =>
    withFreshMemo(async () => {
      const targets = [];
      for (let i = 0; i < 3; i++) {
        const t = await startTarget("sleeper", ["600"]);
        await t.waitFor(/^ready pid=/m);
        targets.push(t);
      }
      const [a, b, c] = targets;
      const maps = (pid: number) => Deno.readTextFileSync(`/proc/${pid}/maps`);
      assert.deepEqual(recallSafeSites(), [], "an empty memo");

      // The first process: searched, and its pair remembered as places in the files.
      const found = findSafeSitesRemembered(a.pid);
      assert.ok(found, "sites found in a C program");
      const memo = recallSafeSites();
      assert.equal(memo.length, 1);
      const areasA = execAreas(maps(a.pid));
      assert.deepEqual(placeOf(areasA, found.call), memo[0].call);
      assert.equal(addressIn(areasA, memo[0].call), found.call);
      assert.equal(addressIn(areasA, memo[0].restorer), found.restorer);

      // Another process (its own addresses): the places give what a search there finds.
      const areasB = execAreas(maps(b.pid));
      const hinted = {
        call: addressIn(areasB, memo[0].call),
        restorer: addressIn(areasB, memo[0].restorer),
      };
      assert.deepEqual(findSafeSitesRemembered(b.pid), hinted);
      assert.deepEqual(findSafeSites(c.pid), {
        call: addressIn(execAreas(maps(c.pid)), memo[0].call),
        restorer: addressIn(execAreas(maps(c.pid)), memo[0].restorer),
      }, "a search (no hint) finds the same places");

      // A place one byte off names no sequence: not used; the search's pair goes first.
      const wrong = {
        ...memo[0],
        restorer: { ...memo[0].restorer, offset: memo[0].restorer.offset + 1 },
      };
      rememberSafeSites(wrong);
      assert.deepEqual(recallSafeSites()[0], wrong);
      const t = await startTarget("sleeper", ["600"]);
      await t.waitFor(/^ready pid=/m);
      const areasT = execAreas(maps(t.pid));
      const got = findSafeSitesRemembered(t.pid);
      assert.deepEqual(got, {
        call: addressIn(areasT, memo[0].call),
        restorer: addressIn(areasT, memo[0].restorer),
      });
      assert.notEqual(got?.restorer, addressIn(areasT, wrong.restorer));
      assert.deepEqual(recallSafeSites()[0], memo[0], "the pair the search found, first");
      assert.equal(recallSafeSites().length, 2);
    })
  ),
);

Deno.test(
  "site memo: a session given the areas takes the pair found before, looked up in them; a pair out of them is not taken",
  withTargets(async () => {
    const t = await startTarget("sleeper", ["600"]);
    await t.waitFor(/^ready pid=/m);
    const found = findSafeSites(t.pid); // (remembered for this pid)
    assert.ok(found);
    const areas = readMaps(t.pid);
    assert.deepEqual(new InjectionSession(t.pid, undefined, areas).safeSites, found);
    assert.deepEqual(rememberedSites(t.pid, () => true), found);
    assert.equal(rememberedSites(t.pid, () => false), undefined, "out of every area: searched");
    // The areas with the call site's area made not executable: the lookup refuses the pair
    // (the session then searches the areas left, and finds another pair or none).
    const at = areas.findIndex((a) => a.start <= found.call && found.call < a.end);
    const changed = areas.map((a, i) => i === at ? { ...a, perms: "rw-p" } : a);
    assert.notDeepEqual(new InjectionSession(t.pid, undefined, changed).safeSites, found);
  }),
);

Deno.test(
  "site memo: the search takes the maps the estimate just counted, and finds the same sites",
  withTargets(() =>
    withFreshMemo(async () => {
      const t = await startTarget("sleeper", ["600"]);
      await t.waitFor(/^ready pid=/m);
      const read = siteMapsReads.count;
      const own = findSafeSitesRemembered(t.pid); // (no count: read by the search)
      assert.ok(own);
      assert.equal(siteMapsReads.count, read + 1);
      assert.ok(countMappings(t.pid) > 0); // as the dump's estimate does (precopy_policy.ts)
      const counted = findSafeSitesRemembered(t.pid);
      assert.equal(siteMapsReads.count, read + 1, "no read of its own after a count");
      assert.deepEqual(counted, own);
      // The count is still there for the VmFlags' check (vm_flags.ts `bpfPays` takes it).
      assert.ok(takeCountedMaps(t.pid, 60_000));
      // Another process's count is not taken.
      assert.ok(countMappings(Deno.pid) > 0);
      assert.deepEqual(findSafeSitesRemembered(t.pid), own);
      assert.equal(siteMapsReads.count, read + 2);
      takeCountedMaps(Deno.pid, 60_000);
    })
  ),
);
