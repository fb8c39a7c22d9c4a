// Every per-vif counter, once (like Linux netback's xenvif_stats[] = {name, offsetof}). The row's
// position is its place in shared memory, its name is the field workers increment and the key
// /vifs serves. A new counter is one row here and nothing else.
//
// Direction is the GUEST's point of view, as the frontend's ring names say: tx = frames the guest
// transmitted (its tx ring), rx = frames delivered to the guest (its rx ring). Linux netback names
// them from the host netdev's side instead, the opposite way round; do not copy its numbers across.

/** What /vifs says about tx and rx, so no one has to find this comment. */
export const COUNTER_DIRECTION =
  "counters are from the guest's side: tx = frames the guest sent (its tx ring), rx = frames delivered to the guest (its rx ring); the opposite of `ip -s link` on a Linux netback vif";

export type CounterKind =
  /** Only ever grows (until the vif goes away). Summing across vifs is meaningful. */
  | "counter"
  /** A level that goes up and down; the aggregate is the sum of the levels. */
  | "gauge";

export const VIF_COUNTERS = [
  { name: "tx_packets", kind: "counter", help: "frames taken off the guest's tx ring and passed on" },
  { name: "tx_bytes", kind: "counter", help: "bytes of those frames" },
  { name: "tx_errors", kind: "counter", help: "tx requests answered with an error status (malformed, grant copy failed)" },
  { name: "tx_drops", kind: "counter", help: "guest frames accepted but dropped (peer down or full)" },
  { name: "tx_batches", kind: "counter", help: "wake-ups that drained at least one tx request" },
  { name: "rx_packets", kind: "counter", help: "frames written into the guest's rx ring" },
  { name: "rx_bytes", kind: "counter", help: "bytes of those frames" },
  { name: "rx_errors", kind: "counter", help: "frames that failed on the way in (grant copy failed)" },
  { name: "rx_drops", kind: "counter", help: "frames dropped for lack of rx slots past the queue limit" },
  { name: "rx_batches", kind: "counter", help: "wake-ups that delivered at least one rx frame" },
  { name: "ffi_calls", kind: "counter", help: "calls from JS into native code on this vif's behalf" },
  { name: "syscalls", kind: "counter", help: "system calls made on this vif's behalf" },
  { name: "notifies_sent", kind: "counter", help: "event channel notifications sent to the frontend" },
  { name: "events_received", kind: "counter", help: "event channel notifications received from the frontend" },
  { name: "rx_queue_bytes", kind: "gauge", help: "bytes waiting for rx slots in the vif's queue" },
  { name: "carrier", kind: "gauge", help: "1 while the vif is connected and passing frames, else 0" },
] as const satisfies readonly { name: string; kind: CounterKind; help: string }[];

export type VifCounterName = (typeof VIF_COUNTERS)[number]["name"];

/** One vif's counters, as read (or summed) from shared memory. */
export type VifStats = Record<VifCounterName, number>;

export const VIF_COUNTER_NAMES: readonly VifCounterName[] = VIF_COUNTERS.map((c) => c.name);
