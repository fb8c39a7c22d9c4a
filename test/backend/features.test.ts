// What qnicd offers per peer kind and data path, and what a frontend's requests then count for:
// SG, TCP GSO and IPv6 checksum offload only where the whole path takes GSO frames (batched data
// path, TAP or null peer).
import { expect, test } from "bun:test";
import { BACKEND_FEATURES, backendFeatures, backendOffers, multicastControlOffered, peerTakesGso } from "../../src/backend/features.ts";
import { readFrontendConfig } from "../../src/backend/frontend-nodes.ts";

test("SG/GSO go with the TAP and null peers on the batched data path; never with the switch peer or the seed path", () => {
  expect(peerTakesGso("tap")).toBe(true);
  expect(peerTakesGso("null")).toBe(true);
  expect(peerTakesGso("switch")).toBe(false);
  for (const peer of ["tap", "null", "switch"] as const) expect(peerTakesGso(peer, "seed")).toBe(false);
});

test("offered: rx-copy always; SG, TCP GSO over IPv4 and IPv6 and IPv6 checksum offload only with tx offloads", () => {
  expect(backendFeatures(false)).toEqual(BACKEND_FEATURES);
  expect(BACKEND_FEATURES.map(([k, v]) => `${k}=${v}`)).toEqual(["feature-rx-copy=1", "feature-rx-flip=0"]);
  expect(backendFeatures(true).map(([k, v]) => `${k}=${v}`)).toEqual(["feature-rx-copy=1", "feature-rx-flip=0", "feature-sg=1", "feature-gso-tcpv4=1", "feature-gso-tcpv6=1", "feature-ipv6-csum-offload=1"]);
  expect(backendOffers("feature-sg", backendFeatures(true))).toBe(true);
  expect(backendOffers("feature-sg", backendFeatures(false))).toBe(false);
  expect(backendOffers("feature-gso-tcpv6", backendFeatures(true))).toBe(true);
  expect(backendOffers("feature-gso-tcpv6", backendFeatures(false))).toBe(false);
});

test("multicast control: both keys on the batched data path only, whatever the peer", () => {
  expect(multicastControlOffered("batched")).toBe(true);
  expect(multicastControlOffered("seed")).toBe(false);
  expect(backendFeatures(false, true).map(([k, v]) => `${k}=${v}`)).toEqual(["feature-rx-copy=1", "feature-rx-flip=0", "feature-multicast-control=1", "feature-dynamic-multicast-control=1"]);
  expect(backendFeatures(true, true).map(([k]) => k)).toContain("feature-sg");
  expect(backendOffers("feature-multicast-control", backendFeatures(false, true))).toBe(true);
  expect(backendOffers("feature-multicast-control", backendFeatures(true))).toBe(false);
});

test("a frontend asking for everything Linux asks for gets SG, GSO and IPv6 checksum offload only where they were offered", async () => {
  const front: Record<string, string> = {
    "tx-ring-ref": "8",
    "rx-ring-ref": "9",
    "event-channel": "5",
    "request-rx-copy": "1",
    mac: "00:16:3e:00:00:01",
    "feature-rx-notify": "1",
    "feature-sg": "1",
    "feature-gso-tcpv4": "1",
    "feature-gso-tcpv6": "1",
    "feature-ipv6-csum-offload": "1",
  };
  const r = { frontend: async (k: string) => front[k], backend: async () => undefined };
  const on = (await readFrontendConfig(r, backendFeatures(true))).features;
  expect(on).toMatchObject({ "feature-sg": true, "feature-gso-tcpv4": true, "feature-gso-tcpv6": true, "feature-ipv6-csum-offload": true });
  const off = (await readFrontendConfig(r, backendFeatures(false))).features;
  expect(off).toMatchObject({ "feature-sg": false, "feature-gso-tcpv4": false, "feature-gso-tcpv6": false, "feature-ipv6-csum-offload": false });
});
