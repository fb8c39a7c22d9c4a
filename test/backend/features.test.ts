// What qnicd offers per peer kind and data path, and what a frontend's requests then count for:
// SG, TCP GSO and IPv6 checksum offload only where the whole path takes GSO frames (the batched data
// path, with any peer: a TAP's kernel, the switch and the null peer all take them).
import { expect, test } from "bun:test";
import { BACKEND_FEATURES, backendFeatures, backendOffers, peerTakesGso } from "../../src/backend/features.ts";
import { readFrontendConfig } from "../../src/backend/frontend-nodes.ts";

test("SG/GSO go with the TAP, switch and null peers on the batched data path; never with the seed path", () => {
  expect(peerTakesGso("tap")).toBe(true);
  expect(peerTakesGso("null")).toBe(true);
  expect(peerTakesGso("switch")).toBe(true);
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
