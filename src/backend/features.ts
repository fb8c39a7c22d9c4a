// The one place that says what qnicd offers a frontend and which frontend requests it honours.
//
// Rule (DESIGN.md "seed parity first"): a feature node is written only when the data path supports
// it end to end, with tests against a frontend that uses it. Today that is the seed's set: copy-mode
// rx and nothing else. The data-path issue adds rows here (feature-sg, feature-gso-tcpv4, ...) when
// the workers handle them; nothing else in the control plane needs to change.

/** Written to B in ONE transaction when the device is realized (Linux netback_probe does the same). */
export const BACKEND_FEATURES: readonly (readonly [key: string, value: string])[] = [
  // Netfront gives up on a backend without rx-copy ("backend does not support copying receive path").
  ["feature-rx-copy", "1"],
  // Page flipping was removed from Xen long ago; say so explicitly as Linux netback does.
  ["feature-rx-flip", "0"],
];

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

/** Whether we offered `key` (and did not offer it as "0"). */
export function backendOffers(key: string): boolean {
  const row = BACKEND_FEATURES.find(([k]) => k === key);
  return row !== undefined && row[1] !== "0";
}

/** Multi-queue is not offered (no multi-queue-max-queues node), so only one queue is accepted. */
export const MAX_QUEUES = 1;
