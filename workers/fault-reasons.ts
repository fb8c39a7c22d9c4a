// Which by-reason counter a guest fault bumps (src/stats/counter-table.ts): grant-copy failures by
// their GNTST status, and protocol violations by the rule their fault line names. Cold paths only:
// the data path calls these for a failed segment or a vif being disabled, never per good packet.
import type { VifCounters } from "../src/stats/index.ts";
import { GNTST_bad_copy_arg, GNTST_bad_domain, GNTST_bad_gntref, GNTST_bad_page, GNTST_general_error } from "../src/xen/grant-table.ts";

export function countCopyFailure(c: VifCounters, dir: "tx" | "rx", status: number): void {
  const tx = dir === "tx";
  switch (status) {
    case GNTST_general_error:
      if (tx) c.tx_copy_failed_general_error++;
      else c.rx_copy_failed_general_error++;
      return;
    case GNTST_bad_domain:
      if (tx) c.tx_copy_failed_bad_domain++;
      else c.rx_copy_failed_bad_domain++;
      return;
    case GNTST_bad_gntref:
      if (tx) c.tx_copy_failed_bad_gntref++;
      else c.rx_copy_failed_bad_gntref++;
      return;
    case GNTST_bad_page:
      if (tx) c.tx_copy_failed_bad_page++;
      else c.rx_copy_failed_bad_page++;
      return;
    case GNTST_bad_copy_arg:
      if (tx) c.tx_copy_failed_bad_copy_arg++;
      else c.rx_copy_failed_bad_copy_arg++;
      return;
    default:
      if (tx) c.tx_copy_failed_other++;
      else c.rx_copy_failed_other++;
  }
}

/**
 * The fault lines the data paths write (workers/tx.ts, ring-checks.ts, back-ring.ts), each matched
 * to its rule. A line no rule matches counts as tx_malformed_other_violation, so a new check is
 * still counted before it gets a row of its own.
 */
const VIOLATIONS: readonly { counter: ViolationCounter; line: RegExp }[] = [
  { counter: "tx_malformed_ring_overflow", line: /^tx req_prod 0x[0-9a-f]+ is more than a ring ahead/ },
  { counter: "rx_malformed_ring_overflow", line: /^rx req_prod 0x[0-9a-f]+ is more than a ring ahead/ },
  { counter: "tx_malformed_page_overrun", line: /its first slot at offset \d+ with \d+ bytes crosses its page/ },
  { counter: "tx_malformed_past_req_prod", line: /continues past req_prod/ },
  { counter: "tx_malformed_too_many_slots", line: /spans more than \d+ slots/ },
  { counter: "tx_malformed_frag_oversize", line: /a fragment of \d+ bytes is larger than the \d+ left of its size/ },
  { counter: "tx_malformed_frag_page_overrun", line: /a fragment at offset \d+ of \d+ bytes crosses its page/ },
  { counter: "tx_malformed_extra_unknown", line: /tx extra info type \d+ is unknown/ },
  { counter: "tx_malformed_gso_invalid", line: /GSO size is 0|GSO type \d+ is unknown/ },
];

type ViolationCounter =
  | "tx_malformed_ring_overflow"
  | "rx_malformed_ring_overflow"
  | "tx_malformed_page_overrun"
  | "tx_malformed_past_req_prod"
  | "tx_malformed_too_many_slots"
  | "tx_malformed_frag_oversize"
  | "tx_malformed_frag_page_overrun"
  | "tx_malformed_extra_unknown"
  | "tx_malformed_gso_invalid"
  | "tx_malformed_other_violation";

/** The counter a protocol violation's fault line belongs to. */
export function violationCounter(line: string): ViolationCounter {
  for (const v of VIOLATIONS) if (v.line.test(line)) return v.counter;
  return "tx_malformed_other_violation";
}
