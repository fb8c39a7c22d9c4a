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

/**
 * GNTST_* statuses a batched grant copy reports per segment (xen/include/public/grant_table.h):
 * Xen answers a grant that is not ours, not in use or read-only with general_error; a domain that is
 * gone with bad_domain; a ref past the table with bad_gntref.
 */
export const COPY_STATUSES = ["general_error", "bad_domain", "bad_gntref", "bad_page", "bad_copy_arg", "other"] as const;

export const VIF_COUNTERS = [
  { name: "tx_packets", kind: "counter", help: "frames taken off the guest's tx ring and passed on" },
  { name: "tx_bytes", kind: "counter", help: "bytes of those frames" },
  { name: "tx_errors", kind: "counter", help: "tx requests answered with an error status (malformed, grant copy failed)" },
  { name: "tx_drops", kind: "counter", help: "guest frames accepted but dropped (peer down or full)" },
  { name: "tx_batches", kind: "counter", help: "wake-ups that drained at least one tx request" },
  { name: "rx_packets", kind: "counter", help: "frames written into the guest's rx ring" },
  { name: "rx_bytes", kind: "counter", help: "bytes of those frames" },
  { name: "rx_errors", kind: "counter", help: "frames that failed on the way in (grant copy failed)" },
  { name: "rx_drops", kind: "counter", help: "frames for the guest dropped (queue full, too big, carrier off): the reasons are rx_drops_*" },
  { name: "rx_batches", kind: "counter", help: "wake-ups that delivered at least one rx frame" },
  { name: "ffi_calls", kind: "counter", help: "calls from JS into native code on this vif's behalf" },
  { name: "syscalls", kind: "counter", help: "system calls made on this vif's behalf" },
  { name: "notifies_sent", kind: "counter", help: "event channel notifications sent to the frontend" },
  { name: "events_received", kind: "counter", help: "event channel notifications received from the frontend" },
  { name: "rx_queue_bytes", kind: "gauge", help: "bytes waiting for rx slots in the vif's queue" },
  { name: "carrier", kind: "gauge", help: "1 while the vif is connected and passing frames, else 0" },

  // By reason, like netback's `ethtool -S vifX.Y` (drivers/net/xen-netback/interface.c,
  // xenvif_stats[]). Rows sharing a `family` are one Prometheus family told apart by `labels`.
  { name: "tx_csum_fixups", kind: "counter", help: "guest frames sent with NETTXF_csum_blank whose checksum the backend completed (in software, or by the TAP's kernel from virtio_net_hdr): netback's rx_gso_checksum_fixup" },
  { name: "tx_gso_packets", kind: "counter", help: "guest frames that carried a GSO extra (TCP up to 64 KiB, segmented on the host side)" },
  { name: "rx_gso_packets", kind: "counter", help: "frames delivered to the guest with a GSO extra (TCP up to 64 KiB over several rx buffers, feature-gso-tcpv4/-tcpv6)" },
  ...malformed("tx", [
    ["runt", "size below an Ethernet header (14 bytes): answered with an error"],
    ["oversize", "a packet larger than a frame slot: answered with an error"],
    ["unnegotiated", "more_data or extra_info flags without feature-sg / feature-gso-*: answered with errors"],
    ["ring_overflow", "req_prod more than a ring ahead of the responses: the vif is disabled"],
    ["page_overrun", "the first slot's data runs past the end of its page: the vif is disabled"],
    ["past_req_prod", "a packet's slots continue past req_prod: the vif is disabled"],
    ["too_many_slots", "a packet over netback's slot limit: the vif is disabled"],
    ["frag_oversize", "a fragment larger than what is left of the packet's size: the vif is disabled"],
    ["frag_page_overrun", "a fragment crossing its page: the vif is disabled"],
    ["extra_unknown", "an extra-info slot of unknown type: the vif is disabled"],
    ["gso_invalid", "a GSO extra with size 0 or an unknown type: the vif is disabled"],
    ["other_violation", "any other protocol violation: the vif is disabled"],
  ]),
  ...malformed("rx", [["ring_overflow", "req_prod more than a ring ahead of the responses: the vif is disabled"]]),
  ...copyFailures("tx"),
  ...copyFailures("rx"),
  { name: "tx_throttles", kind: "counter", help: "times the vif's rate limit (B/rate) held a guest packet back until the next credit window: netback's tx_credit_exceeded" },
  { name: "tx_throttled_usecs", kind: "counter", help: "microseconds guest tx spent held back by the vif's rate limit" },
  { name: "tx_mcast_requests", kind: "counter", help: "multicast-control requests (MCAST_ADD / MCAST_DEL extras) the guest sent on its tx ring" },
  { name: "tx_mcast_refused", kind: "counter", help: "MCAST_ADD requests refused because the vif's list already held 64 groups (answered with an error)" },
  { name: "rx_stalls", kind: "counter", help: "times the guest left frames waiting with no rx buffer posted for the stall timeout (carrier off, queue dropped): netback's \"Guest Rx stalled\"" },
  ...rxDrops([
    ["oversize", "a frame larger than the guest takes: over one rx buffer without feature-sg, over 64 KiB, or GSO of a type it did not ask for"],
    ["carrier_off", "a frame arriving while the carrier is off after a stall"],
    ["queue_full", "no rx buffer posted and the vif's queue at its byte limit (XSA-392)"],
    ["stall_purge", "frames waiting in the queue when the carrier went off"],
    ["expired", "frames that waited in the queue past the drain timeout (netback's rx_drain_timeout: 10 s, 30 ms without feature-rx-notify)"],
    ["mcast_filtered", "a multicast frame to a group the guest did not add, while it asked for multicast control"],
  ]),
] as const satisfies readonly CounterRow[];

interface CounterRow {
  name: string;
  kind: CounterKind;
  help: string;
  /** Rows of one family are one Prometheus family; `labels` tell them apart. */
  family?: string;
  familyHelp?: string;
  labels?: Readonly<Record<string, string>>;
}

function malformed<const D extends "tx" | "rx", const R extends string>(dir: D, reasons: readonly (readonly [R, string])[]) {
  return reasons.map(([reason, help]) => ({
    name: `${dir}_malformed_${reason}` as `${D}_malformed_${R}`,
    kind: "counter" as const,
    help,
    family: `${dir}_malformed`,
    familyHelp: `${dir} requests refused, by the rule they broke (netback's xenvif_tx_err / xenvif_fatal_tx_err checks)`,
    labels: { reason },
  }));
}

function copyFailures<const D extends "tx" | "rx">(dir: D) {
  return COPY_STATUSES.map((status) => ({
    name: `${dir}_copy_failed_${status}` as `${D}_copy_failed_${(typeof COPY_STATUSES)[number]}`,
    kind: "counter" as const,
    help: `grant-copy segments failed with GNTST_${status}`,
    family: `${dir}_copy_failures`,
    familyHelp: dir === "tx" ? "grant copies out of the guest's tx buffers that failed, by GNTST status (the packet is answered with an error)" : "grant copies into the guest's rx buffers that failed, by GNTST status (the buffer is answered with an error)",
    labels: { status },
  }));
}

function rxDrops<const R extends string>(reasons: readonly (readonly [R, string])[]) {
  return reasons.map(([reason, help]) => ({
    name: `rx_drops_${reason}` as `rx_drops_${R}`,
    kind: "counter" as const,
    help,
    family: "rx_dropped_by_reason",
    familyHelp: "frames for the guest dropped, by reason (their sum is rx_drops)",
    labels: { reason },
  }));
}

export type VifCounterName = (typeof VIF_COUNTERS)[number]["name"];

/** One vif's counters, as read (or summed) from shared memory. */
export type VifStats = Record<VifCounterName, number>;

export const VIF_COUNTER_NAMES: readonly VifCounterName[] = VIF_COUNTERS.map((c) => c.name);
