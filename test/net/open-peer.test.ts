// openPeer: the worker's one call from a PeerHandle (what the main thread sent) to a Peer.
import { expect, test } from "bun:test";
import { openPeer, SwitchFabric } from "../../src/net/index.ts";
import { canUseTap, createTestTap, uniqueIfName } from "./tap-helper.ts";

test("a null handle opens a null peer", () => {
  const p = openPeer({ kind: "null", name: "vif1.0", fd: -1 });
  expect(p.kind).toBe("null");
  expect(p.name).toBe("vif1.0");
});

test("a switch handle opens a port on the switch whose address the worker was given", () => {
  const f = new SwitchFabric({ ports: 2, ringBytes: 1 << 16 });
  try {
    const p = openPeer({ kind: "switch", name: "vif2.0", fd: -1 }, { switchAddress: f.address });
    expect(p.kind).toBe("switch");
    expect(p.pollFd).toBeGreaterThanOrEqual(0);
    p.close();
  } finally {
    f.destroy();
  }
  expect(() => openPeer({ kind: "switch", name: "vif2.0", fd: -1 })).toThrow(/no switch address: the pool must pass SwitchFabric.address/);
});

test("a tap handle without an fd is refused with the cure", () => {
  expect(() => openPeer({ kind: "tap", name: "vif3.0", fd: -1 })).toThrow(/TAP vif3.0: no fd in the peer handle/);
});

test.skipIf(!canUseTap())("a tap handle opens a TAP peer on its fd, through io_uring where it can", () => {
  const t = createTestTap(uniqueIfName("o"));
  try {
    const p = openPeer({ kind: "tap", name: t.name, fd: t.fd });
    expect(p.kind).toBe("tap");
    expect(p.pollFd).toBe(t.fd);
    expect((p as { usesUring?: boolean }).usesUring).toBe(true);
    p.close();
  } finally {
    t.close();
  }
});
