// The one place that says what qnicd offers a frontend and which frontend requests it honours.
//
// Rule (DESIGN.md "seed parity first"): a feature node is written only when the data path supports
// it end to end, with tests against a frontend that uses it. Always: copy-mode rx. Guest-tx
// scatter-gather, TCP GSO over IPv4 and IPv6 and IPv6 checksum offload (feature-sg,
// feature-gso-tcpv4, feature-gso-tcpv6, feature-ipv6-csum-offload) only where the whole path takes
// 64 KiB GSO frames: the batched data path (workers/tx.ts) feeding a TAP opened with IFF_VNET_HDR
// (the kernel segments and completes checksums), the switch peer (GSO frames cross whole; a port
// whose guest did not negotiate rx GSO gets them segmented with complete checksums, native/segment.h)
// or the null peer (drops). Not the seed data path: it is the per-packet baseline and answers
// multi-slot packets with errors. The same frontend keys turn rx GSO on (workers/rx.ts).

/** A key and the value written under B. */
export type FeatureNode = readonly [key: string, value: string];

/** Written by every backend (Linux netback_probe writes these too). */
const BASE_FEATURES: readonly FeatureNode[] = [
  // Netfront gives up on a backend without rx-copy ("backend does not support copying receive path").
  ["feature-rx-copy", "1"],
  // Page flipping was removed from Xen long ago; say so explicitly as Linux netback does.
  ["feature-rx-flip", "0"],
  // One event channel per ring (netback's separate_tx_rx_irq, on by default): a tx kick never
  // wakes the rx side and the other way round.
  ["feature-split-event-channels", "1"],
];

/**
 * Added when the peer takes GSO frames: Linux netfront then sends up to 64 KiB TCP packets in up to
 * 18 slots, and leaves IPv6 TCP/UDP checksums to us as it does IPv4 ones (csum_blank).
 */
const TX_OFFLOAD_FEATURES: readonly FeatureNode[] = [
  ["feature-sg", "1"],
  ["feature-gso-tcpv4", "1"],
  ["feature-gso-tcpv6", "1"],
  ["feature-ipv6-csum-offload", "1"],
];

/**
 * The control ring (Linux netback_probe writes it always): a frontend may then set up Toeplitz
 * hashing (workers/ctrl-ring.ts), which the batched data path honours with hash extras on guest rx.
 * Not on the seed data path (QEMU's qnic has no control ring).
 */
const CTRL_RING_FEATURES: readonly FeatureNode[] = [["feature-ctrl-ring", "1"]];

/**
 * Multicast control (netif.h; netback_probe writes both): the frontend may send MCAST_ADD/DEL
 * extras on its tx ring and, with request-multicast-control (watched from connect: "dynamic"), have
 * frames to groups it did not add dropped. The batched data path only (workers/mcast-filter.ts);
 * the seed answers extras with errors.
 */
const MULTICAST_FEATURES: readonly FeatureNode[] = [
  ["feature-multicast-control", "1"],
  ["feature-dynamic-multicast-control", "1"],
];

/** The seed's set: what a backend whose peer cannot take GSO frames offers (one queue). */
export const BACKEND_FEATURES: readonly FeatureNode[] = [...BASE_FEATURES, ["multi-queue-max-queues", "1"]];

/** Whether guest-tx SG/GSO can be offered for this peer kind and data path. */
export function peerTakesGso(peer: "tap" | "switch" | "null", datapath: "batched" | "seed" = "batched"): boolean {
  return datapath === "batched";
}

/**
 * The nodes written to B in ONE transaction when the device is realized (Linux netback_probe does
 * the same). `txOffloads`: peerTakesGso() of the daemon's peer and data path. `maxQueues`: what
 * multi-queue-max-queues offers (netback: min(8, online CPUs); qnicd: --max-queues, by default
 * min(8, workers)), each queue a ring pair served on its own. `ctrlRing`: offersCtrlRing() and
 * `multicastControl`: multicastControlOffered() of the daemon's data path.
 */
export function backendFeatures(txOffloads: boolean, more: { maxQueues?: number; ctrlRing?: boolean; multicastControl?: boolean } = {}): readonly FeatureNode[] {
  const maxQueues = more.maxQueues ?? 1;
  if (!Number.isInteger(maxQueues) || maxQueues < 1 || maxQueues > MAX_QUEUES_LIMIT) throw new RangeError(`maxQueues must be 1..${MAX_QUEUES_LIMIT}, got ${maxQueues}`);
  return [
    ...BASE_FEATURES,
    ["multi-queue-max-queues", String(maxQueues)],
    ...(txOffloads ? TX_OFFLOAD_FEATURES : []),
    ...(more.ctrlRing ? CTRL_RING_FEATURES : []),
    ...(more.multicastControl ? MULTICAST_FEATURES : []),
  ];
}

/** Whether the control ring is offered for this data path. */
export function offersCtrlRing(datapath: "batched" | "seed" = "batched"): boolean {
  return datapath === "batched";
}

/** Whether multicast control can be offered: on the batched data path, whatever the peer. */
export function multicastControlOffered(datapath: "batched" | "seed" = "batched"): boolean {
  return datapath === "batched";
}

/** The most queues qnicd offers a vif (netback's default cap is 8; tun allows 256 queues per TAP). */
export const MAX_QUEUES_LIMIT = 64;

/** The queue count `offered` allows (its multi-queue-max-queues node; 1 without one). */
export function offeredQueues(offered: readonly FeatureNode[]): number {
  const row = offered.find(([k]) => k === "multi-queue-max-queues");
  const n = row === undefined ? 1 : Number(row[1]);
  return Number.isInteger(n) && n >= 1 ? n : 1;
}

/**
 * Frontend feature keys read at connect. `needsOffer`: the backend key that must have been written
 * (with a non-"0" value) for the frontend's request to count; null for keys that only describe the
 * frontend (it needs nothing from us for them).
 */
export const FRONTEND_FEATURES: readonly { readonly key: string; readonly needsOffer: string | null }[] = [
  // The frontend will kick us when it posts rx requests; without it Linux polls more often.
  { key: "feature-rx-notify", needsOffer: null },
  { key: "feature-sg", needsOffer: "feature-sg" },
  { key: "feature-gso-tcpv4", needsOffer: "feature-gso-tcpv4" },
  { key: "feature-gso-tcpv6", needsOffer: "feature-gso-tcpv6" },
  { key: "feature-ipv6-csum-offload", needsOffer: "feature-ipv6-csum-offload" },
  // The frontend cannot take packets with a blank checksum: the data path must fill them in.
  { key: "feature-no-csum-offload", needsOffer: null },
];

/** Whether `offered` (what was written to B) offers `key` (and not as "0"). */
export function backendOffers(key: string, offered: readonly FeatureNode[] = BACKEND_FEATURES): boolean {
  const row = offered.find(([k]) => k === key);
  return row !== undefined && row[1] !== "0";
}
