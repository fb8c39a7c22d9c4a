// The bidir scenario: bench/lib/datapath-scenario.ts does the work (shared with the other directions).
import { runDatapath } from "../lib/datapath-scenario.ts";
import type { Scenario } from "../lib/scenario.ts";

export const scenario: Scenario = {
  name: "bidir",
  description: "tx and rx at once on one vif, 64/512/1500 B: qnicd vs the C reference loop",
  pin: "0",
  run: (opts) => runDatapath("bidir", opts),
};
