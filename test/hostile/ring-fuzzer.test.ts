// The ring fuzzer in CI (test/hostile/ring-fuzz.ts says what it writes and checks): four seeds of a
// quarter million ring operations each, a million per run. A failure names its seed, step and the
// broken invariant, and prints the one command that replays exactly that seed:
//   QNICD_FUZZ_SEED=<seed> QNICD_FUZZ_OPS=<ops> node scripts/bun.mjs test test/hostile/ring-fuzzer.test.ts
import { expect, test } from "bun:test";
import { FuzzFailure, runRingFuzz } from "./ring-fuzz.ts";

const one = process.env.QNICD_FUZZ_SEED;
const seeds = one ? [Number(one)] : [1, 2, 3, 4];
const ops = Number(process.env.QNICD_FUZZ_OPS ?? (one ? 250_000 : 1_000_000 / seeds.length));

for (const seed of seeds) {
  test(`ring fuzzer, seed ${seed}: ${ops} ring operations, every invariant after every step`, async () => {
    try {
      const r = await runRingFuzz({ seed, ops });
      console.log(
        `ring fuzzer seed ${seed}: ${r.ops} ops (${r.txSlots} tx slots, ${r.rxSlots} rx slots, ${r.kicks} kicks) in ${r.steps} steps, ` +
          `${r.seconds.toFixed(1)} s = ${Math.round(r.ops / r.seconds)} ops/s; ${r.copiesChecked} grant accesses checked; ` +
          `violations ${JSON.stringify(r.violations)}; neighbour frames ${r.neighbourFrames}; RSS growth ${r.rssGrowthMiB.toFixed(0)} MiB`,
      );
      expect(r.ops).toBeGreaterThanOrEqual(ops);
      expect(Object.keys(r.violations).length).toBeGreaterThan(0);
    } catch (e) {
      if (e instanceof FuzzFailure) console.error(`${e.message}\nreproduce: QNICD_FUZZ_SEED=${seed} QNICD_FUZZ_OPS=${ops} node scripts/bun.mjs test test/hostile/ring-fuzzer.test.ts`);
      throw e;
    }
  }, 180_000);
}
