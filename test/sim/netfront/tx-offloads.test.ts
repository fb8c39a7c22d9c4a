// The simulated netfront's tx side with SG/GSO, read straight off the shared ring as a backend
// sees it: as Linux's xennet_start_xmit, a frame over a page goes out in several slots (the first
// slot's size is the whole packet's, NETTXF_more_data on all but the last), a GSO packet carries
// csum_blank | data_validated | extra_info and a GSO extra-info slot right after its first slot, and
// nothing of this is sent to a backend that did not offer it.
import { afterEach, expect, test } from "bun:test";
import { createNetfront } from "../../../src/sim/netfront/netfront.ts";
import { NETTXF_csum_blank, NETTXF_data_validated, NETTXF_extra_info, NETTXF_more_data, XEN_NETIF_EXTRA_TYPE_GSO, XEN_NETIF_GSO_TYPE_TCPV4, XEN_NETIF_GSO_TYPE_TCPV6 } from "../../../src/xen/netif.ts";
import { NETBACK_FEATURES, startHost, TestBackend, until } from "./harness.ts";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function connected(features: Record<string, string>) {
  const host = await startHost();
  cleanups.push(() => host.close());
  const domid = await host.guest("g", "00:16:3e:12:34:57");
  const be = new TestBackend(host, domid);
  cleanups.push(() => be.close());
  const nf = await createNetfront({ dir: host.dir, domid, devid: 0 });
  cleanups.push(() => nf.close());
  await be.offer(features);
  await be.connect();
  const info = await nf.whenConnected();
  return { host, domid, be, nf, info };
}

/** Every request slot up to req_prod, raw: a backend's view. */
function slots(be: TestBackend) {
  const v = new DataView(be.txMap!.buffer);
  const prod = be.txHeader().reqProd;
  const out = [];
  for (let i = 0; i < prod; i++) {
    const o = 64 + i * 12;
    out.push({ gref: v.getUint32(o, true), offset: v.getUint16(o + 4, true), flags: v.getUint16(o + 6, true), id: v.getUint16(o + 8, true), size: v.getUint16(o + 10, true), bytes: new Uint8Array(v.buffer, o, 12).slice() });
  }
  return out;
}

test("with feature-sg and feature-gso-tcpv4 offered: a GSO packet is a first slot, its GSO extra, then its fragments, each fragment in a page of its own", async () => {
  const { be, nf, info, domid } = await connected(NETBACK_FEATURES);
  expect(info.txOffloads).toEqual({ sg: true, gsoTcpv4: true, gsoTcpv6: true });
  const f = new Uint8Array(9000).map((_, i) => (i * 7) & 0xff);
  expect(nf.send(f, { offset: 100, gso: { size: 1448, type: XEN_NETIF_GSO_TYPE_TCPV4 } })).toBe(true);
  await until("requests", () => be.txHeader().reqProd === 4);
  const s = slots(be);
  expect(s[0]).toMatchObject({ offset: 100, flags: NETTXF_csum_blank | NETTXF_data_validated | NETTXF_extra_info | NETTXF_more_data, size: 9000 });
  // struct netif_extra_info: type GSO, flags 0, gso.size, gso.type, pad, features.
  expect([...s[1]!.bytes.subarray(0, 8)]).toEqual([XEN_NETIF_EXTRA_TYPE_GSO, 0, 1448 & 0xff, 1448 >> 8, XEN_NETIF_GSO_TYPE_TCPV4, 0, 0, 0]);
  expect(s.slice(2).map((r) => [r.offset, r.flags, r.size])).toEqual([
    [0, NETTXF_more_data, 4096],
    [0, 0, 9000 - 3996 - 4096],
  ]);
  // The bytes: the first slot carries 3996 (to its page's end), each fragment its own chunk.
  const gnt = be.platform.openGrantDevice();
  const got: Uint8Array[] = [];
  for (const [r, len] of [[s[0]!, 3996], [s[2]!, 4096], [s[3]!, 908]] as const) {
    const m = gnt.map(domid, [r.gref], false);
    got.push(new Uint8Array(m.buffer, r.offset, len).slice());
    m.unmap();
  }
  gnt.close();
  expect(Buffer.concat(got)).toEqual(Buffer.from(f));
  expect(new Set(s.filter((_, i) => i !== 1).map((r) => r.id)).size).toBe(3); // one id per data slot
});

test("explicit slot sizes, and TCPv6 GSO only where offered", async () => {
  const { be, nf } = await connected({ ...NETBACK_FEATURES, "feature-gso-tcpv6": "0" });
  expect(nf.send(new Uint8Array(1514), { slots: [14, 1000, 500] })).toBe(true);
  await until("requests", () => be.txHeader().reqProd === 3);
  expect(slots(be).map((r) => [r.flags, r.size])).toEqual([
    [NETTXF_more_data, 1514],
    [NETTXF_more_data, 1000],
    [0, 500],
  ]);
  expect(() => nf.send(new Uint8Array(3000), { gso: { size: 1000, type: XEN_NETIF_GSO_TYPE_TCPV6 } })).toThrow(/GSO type 2: the backend did not offer it/);
  expect(() => nf.send(new Uint8Array(100), { slots: [50, 40] })).toThrow(/do not add up/);
  expect(() => nf.send(new Uint8Array(100_000))).toThrow(RangeError);
});

test("without feature-sg offered: one slot per frame, at most a page, as before", async () => {
  const { nf, info } = await connected({ "feature-rx-copy": "1" });
  expect(info.txOffloads).toEqual({ sg: false, gsoTcpv4: false, gsoTcpv6: false });
  expect(() => nf.send(new Uint8Array(4097))).toThrow(/did not offer feature-sg/);
  expect(() => nf.send(new Uint8Array(100), { gso: { size: 50, type: XEN_NETIF_GSO_TYPE_TCPV4 } })).toThrow(/did not offer it/);
  expect(nf.send(new Uint8Array(4096))).toBe(true);
});
