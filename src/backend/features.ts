// The one place that says what qnicd offers a frontend and which frontend requests it honours.
//
// Rule (DESIGN.md "seed parity first"): a feature node is written only when the data path supports
// it end to end, with tests against a frontend that uses it. Always: copy-mode rx. Guest-tx
// scatter-gather, TCP GSO over IPv4 and IPv6 and IPv6 checksum offload (feature-sg,
// feature-gso-tcpv4, feature-gso-tcpv6, feature-ipv6-csum-offload) only where the whole path takes
// 64 KiB GSO frames: the batched data path (workers/tx.ts) feeding a TAP opened with IFF_VNET_HDR
// (the kernel segments and completes checksums) or the null peer (drops). Not the switch peer: it
// feeds other vifs' rx paths, which deliver neither frames over a page nor GSO to a frontend. Not
// the seed data path: it is the per-packet baseline and answers multi-slot packets with errors.

/** A key and the value written under B. */
export type FeatureNode = readonly [key: string, value: string];

/** Written by every backend (Linux netback_probe writes these too). */
const BASE_FEATURES: readonly FeatureNode[] = [
  // Netfront gives up on a backend without rx-copy ("backend does not support copying receive path").
  ["feature-rx-copy", "1"],
  // Page flipping was removed from Xen long ago; say so explicitly as Linux netback does.
  ["feature-rx-flip", "0"],
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
 * Multicast control (netif.h; netback_probe writes both): the frontend may send MCAST_ADD/DEL
 * extras on its tx ring and, with request-multicast-control (watched from connect: "dynamic"), have
 * frames to groups it did not add dropped. The batched data path only (workers/mcast-filter.ts);
 * the seed answers extras with errors.
 */
const MULTICAST_FEATURES: readonly FeatureNode[] = [
  ["feature-multicast-control", "1"],
  ["feature-dynamic-multicast-control", "1"],
];

/** The seed's set: what a backend whose peer cannot take GSO frames offers. */
export const BACKEND_FEATURES: readonly FeatureNode[] = BASE_FEATURES;

/** Whether guest-tx SG/GSO can be offered for this peer kind and data path. */
export function peerTakesGso(peer: "tap" | "switch" | "null", datapath: "batched" | "seed" = "batched"): boolean {
  return datapath === "batched" && (peer === "tap" || peer === "null");
}

/**
 * The nodes written to B in ONE transaction when the device is realized (Linux netback_probe does
 * the same). `txOffloads`: peerTakesGso() of the daemon's peer and data path; `multicastControl`:
 * multicastControlOffered() of its data path.
 */
export function backendFeatures(txOffloads: boolean, multicastControl = false): readonly FeatureNode[] {
  if (!txOffloads && !multicastControl) return BASE_FEATURES;
  return [...BASE_FEATURES, ...(txOffloads ? TX_OFFLOAD_FEATURES : []), ...(multicastControl ? MULTICAST_FEATURES : [])];
}

/** Whether multicast control can be offered: on the batched data path, whatever the peer. */
export function multicastControlOffered(datapath: "batched" | "seed" = "batched"): boolean {
  return datapath === "batched";
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

/** Multi-queue is not offered (no multi-queue-max-queues node), so only one queue is accepted. */
export const MAX_QUEUES = 1;
