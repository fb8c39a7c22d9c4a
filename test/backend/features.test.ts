// What qnicd offers per peer kind and data path, and what a frontend's requests then count for:
// SG, TCP GSO and IPv6 checksum offload only where the whole path takes GSO frames (the batched data
// path, with any peer: a TAP's kernel, the switch and the null peer all take them).
import { describe, expect, test } from "bun:test";
import { BACKEND_FEATURES, backendFeatures, backendOffers, multicastControlOffered, offersCtrlRing, peerTakesGso } from "../../src/backend/features.ts";
import { readFrontendConfig } from "../../src/backend/frontend-nodes.ts";

test("SG/GSO go with the TAP, switch and null peers on the batched data path; never with the seed path", () => {
  expect(peerTakesGso("tap")).toBe(true);
  expect(peerTakesGso("null")).toBe(true);
  expect(peerTakesGso("switch")).toBe(true);
  for (const peer of ["tap", "null", "switch"] as const) expect(peerTakesGso(peer, "seed")).toBe(false);
});

test("offered: rx-copy always; SG, TCP GSO over IPv4 and IPv6 and IPv6 checksum offload only with tx offloads", () => {
  expect(backendFeatures(false)).toEqual(BACKEND_FEATURES);
  const base = ["feature-rx-copy=1", "feature-rx-flip=0", "feature-split-event-channels=1"];
  expect(BACKEND_FEATURES.map(([k, v]) => `${k}=${v}`)).toEqual([...base, "multi-queue-max-queues=1"]);
  expect(backendFeatures(true, { maxQueues: 4 }).map(([k, v]) => `${k}=${v}`)).toEqual([...base, "multi-queue-max-queues=4", "feature-sg=1", "feature-gso-tcpv4=1", "feature-gso-tcpv6=1", "feature-ipv6-csum-offload=1"]);
  expect(() => backendFeatures(false, { maxQueues: 0 })).toThrow(RangeError);
  expect(backendOffers("feature-sg", backendFeatures(true))).toBe(true);
  expect(backendOffers("feature-sg", backendFeatures(false))).toBe(false);
  expect(backendOffers("feature-gso-tcpv6", backendFeatures(true))).toBe(true);
  expect(backendOffers("feature-gso-tcpv6", backendFeatures(false))).toBe(false);
});

test("multicast control: both keys on the batched data path only, whatever the peer", () => {
  expect(multicastControlOffered("batched")).toBe(true);
  expect(multicastControlOffered("seed")).toBe(false);
  expect(backendFeatures(false, { multicastControl: true }).map(([k, v]) => `${k}=${v}`)).toEqual(["feature-rx-copy=1", "feature-rx-flip=0", "feature-split-event-channels=1", "multi-queue-max-queues=1", "feature-multicast-control=1", "feature-dynamic-multicast-control=1"]);
  expect(backendFeatures(true, { multicastControl: true }).map(([k]) => k)).toContain("feature-sg");
  expect(backendOffers("feature-multicast-control", backendFeatures(false, { multicastControl: true }))).toBe(true);
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

test("the control ring is offered on the batched data path only, after the tx offloads", () => {
  expect(offersCtrlRing("batched")).toBe(true);
  expect(offersCtrlRing("seed")).toBe(false);
  expect(backendFeatures(true, { ctrlRing: true }).map(([k, v]) => `${k}=${v}`)).toEqual(["feature-rx-copy=1", "feature-rx-flip=0", "feature-split-event-channels=1", "multi-queue-max-queues=1", "feature-sg=1", "feature-gso-tcpv4=1", "feature-gso-tcpv6=1", "feature-ipv6-csum-offload=1", "feature-ctrl-ring=1"]);
  expect(backendFeatures(false, { ctrlRing: true }).map(([k, v]) => `${k}=${v}`)).toEqual(["feature-rx-copy=1", "feature-rx-flip=0", "feature-split-event-channels=1", "multi-queue-max-queues=1", "feature-ctrl-ring=1"]);
});

describe("ctrl-ring-ref and event-channel-ctrl at connect (netback's connect_ctrl_ring)", () => {
  const base: Record<string, string> = { "tx-ring-ref": "8", "rx-ring-ref": "9", "event-channel": "5", "request-rx-copy": "1", mac: "00:16:3e:00:00:01" };
  const reader = (extra: Record<string, string>) => {
    const front = { ...base, ...extra };
    return { frontend: async (k: string) => front[k], backend: async () => undefined };
  };
  test("both: read; neither: no control ring", async () => {
    const c = await readFrontendConfig(reader({ "ctrl-ring-ref": "77", "event-channel-ctrl": "12" }), backendFeatures(false, { ctrlRing: true }));
    expect([c.ctrlRingRef, c.ctrlEvtchn]).toEqual([77, 12]);
    const none = await readFrontendConfig(reader({}), backendFeatures(false, { ctrlRing: true }));
    expect([none.ctrlRingRef, none.ctrlEvtchn]).toEqual([undefined, undefined]);
  });
  test("a ref without a port is fatal, naming event-channel-ctrl; a malformed ref or port is fatal", async () => {
    await expect(readFrontendConfig(reader({ "ctrl-ring-ref": "77" }), backendFeatures(false, { ctrlRing: true }))).rejects.toThrow(/reading event-channel-ctrl: the frontend did not write it/);
    await expect(readFrontendConfig(reader({ "ctrl-ring-ref": "x7", "event-channel-ctrl": "12" }), backendFeatures(false, { ctrlRing: true }))).rejects.toThrow(/reading ctrl-ring-ref: .* is not a grant reference/);
    await expect(readFrontendConfig(reader({ "ctrl-ring-ref": "7", "event-channel-ctrl": "0" }), backendFeatures(false, { ctrlRing: true }))).rejects.toThrow(/reading event-channel-ctrl: .* is not an event channel port/);
  });
  test("not offered (the seed data path): the nodes are not even read", async () => {
    const c = await readFrontendConfig(reader({ "ctrl-ring-ref": "77" }), backendFeatures(false, { ctrlRing: false }));
    expect(c.ctrlRingRef).toBeUndefined();
  });
});
