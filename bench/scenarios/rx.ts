// The rx scenario: bench/lib/datapath-scenario.ts does the work (shared with the other directions).
import { runDatapath } from "../lib/datapath-scenario.ts";
import type { Scenario } from "../lib/scenario.ts";

export const scenario: Scenario = {
  name: "rx",
  description: "source generator -> guest rx, one vif, 64/512/1500 B: qnicd's rx path vs the C reference loop",
  pin: "0",
  run: (opts) => runDatapath("rx", opts),
};
