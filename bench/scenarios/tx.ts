// The tx scenario: bench/lib/datapath-scenario.ts does the work (shared with the other directions).
import { runDatapath } from "../lib/datapath-scenario.ts";
import type { Scenario } from "../lib/scenario.ts";

export const scenario: Scenario = {
  name: "tx",
  description: "guest tx -> null sink, one vif, 64/512/1500 B: qnicd's tx path vs the C reference loop",
  pin: "0",
  run: (opts) => runDatapath("tx", opts),
};
