// Multicast control end to end: a guest whose netfront acts as the Windows PV drivers do (writes
// request-multicast-control, adds groups with MCAST_ADD extras) gets only the multicast frames of
// the groups it added, broadcast and unicast always; flipping its request at runtime takes effect;
// a DEL takes a group away. Frames come from a second guest through the in-daemon switch.
import { expect, test } from "bun:test";
import { parseMac } from "../../src/sim/netfront/index.ts";
import { NETIF_RSP_OKAY } from "../../src/xen/netif.ts";
import { until } from "../backend/sim-host.ts";
import { daemonFixture } from "../support/daemon-fixture.ts";

const fx = daemonFixture();

const GROUP_FB = "01:00:5e:00:00:fb";
const GROUP_FC = "01:00:5e:00:00:fc";

async function vif(name: string) {
  return fx.vif<{ features: Record<string, boolean>; multicastControl: boolean; counters: Record<string, number> }>(name);
}

/** A frame from `src` to `dst` whose last byte says which one it is. */
function frameTo(dst: string, src: string, tag: number): Uint8Array {
  const f = new Uint8Array(60);
  f.set(parseMac(dst)!, 0);
  f.set(parseMac(src)!, 6);
  f.set([0x88, 0xb5], 12); // local experimental ethertype: nobody answers it
  f[59] = tag;
  return f;
}

test("a guest asking for multicast control receives only the groups it added; runtime flips and DEL take effect", async () => {
  const host = await fx.startHost();
  await fx.startDaemon(["--workers", "1", "--peer", "switch"], { log: "error" });
  const statuses = new Map<number, number>();
  const { domid, vif: name, nf: rx } = await fx.guest("win", { multicastControl: true, onTxResponse: (id, s) => statuses.set(id, s) });
  const { nf: tx, info: txInfo } = await fx.guest("sender");
  const got: number[] = [];
  rx.onReceive((f) => {
    if (f[12] === 0x88 && f[13] === 0xb5) got.push(f[59]!);
  });
  expect((await host.xs.read(`/local/domain/0/backend/vif/${domid}/0/feature-multicast-control`))).toBe("1");
  expect((await host.xs.read(`/local/domain/0/backend/vif/${domid}/0/feature-dynamic-multicast-control`))).toBe("1");
  expect(await host.xs.read(`/local/domain/${domid}/device/vif/0/request-multicast-control`)).toBe("1");
  await until("request seen", async () => (await vif(name)).multicastControl, 5000);

  const add = rx.multicast("add", GROUP_FB);
  await until("ADD answered", () => statuses.has(add), 5000);
  expect(statuses.get(add)).toBe(NETIF_RSP_OKAY);

  const round = async (tags: number[], expectGot: number[]) => {
    got.length = 0;
    for (const t of tags) expect(tx.send(frameTo(t === 1 ? GROUP_FB : t === 2 ? GROUP_FC : t === 3 ? "ff:ff:ff:ff:ff:ff" : rx.connection!.mac, txInfo.mac, t))).toBe(true);
    await until(`frames ${expectGot.join(",")}`, () => got.length >= expectGot.length && got, 5000);
    await Bun.sleep(100); // anything that should have been dropped would be here by now
    expect([...got].sort()).toEqual(expectGot);
  };
  // 1 = the added group, 2 = another group, 3 = broadcast, 4 = unicast to the guest.
  await round([1, 2, 3, 4], [1, 3, 4]);
  expect((await vif(name)).counters.rx_drops_mcast_filtered).toBe(1);

  // The guest stops asking: every group is delivered (the list stays).
  await rx.requestMulticastControl(false);
  await until("request dropped", async () => !(await vif(name)).multicastControl, 5000);
  await round([1, 2], [1, 2]);

  // Asking again, after a DEL of its group: both groups are filtered.
  const del = rx.multicast("del", GROUP_FB);
  await until("DEL answered", () => statuses.has(del), 5000);
  expect(statuses.get(del)).toBe(NETIF_RSP_OKAY);
  await rx.requestMulticastControl(true);
  await until("request back", async () => (await vif(name)).multicastControl, 5000);
  await round([1, 2, 3], [3]);
  const c = (await vif(name)).counters;
  expect([c.rx_drops_mcast_filtered, c.tx_mcast_requests, c.tx_mcast_refused]).toEqual([3, 2, 0]);
  expect(rx.broken).toBe(false);
});

/**
 * Two workers, up to two queues a vif: "win" with `vcpus` vCPUs asks for multicast control (the
 * status of each of its tx requests in `statuses`, the tag of each test frame it gets in `got`),
 * "sender" sends to it. Their netfronts wait as Linux's do.
 */
async function winAndSender(vcpus: number) {
  const host = await fx.startHost();
  await fx.startDaemon(["--workers", "2", "--max-queues", "2", "--peer", "switch"], { log: "error" });
  const a = await host.ts.create("win", { vifs: 1 });
  const b = await host.ts.create("sender", { vifs: 1 });
  const statuses = new Map<number, number>();
  const rx = await fx.netfront({ domid: a.domid, vcpus, multicastControl: true, onTxResponse: (id, s) => statuses.set(id, s) });
  const tx = await fx.netfront({ domid: b.domid });
  const rxInfo = await rx.whenConnected(5000);
  const txInfo = await tx.whenConnected(5000);
  const got: number[] = [];
  rx.onReceive((f) => {
    if (f[12] === 0x88 && f[13] === 0xb5) got.push(f[59]!);
  });
  // The added group (GROUP_FB) arrives and another (GROUP_FC, sent first, so its absence means
  // something once FB is in) is filtered.
  const filtered = async (what: string) => {
    await until(`${what}: the added group's frames arrive`, async () => {
      got.length = 0;
      expect(tx.send(frameTo(GROUP_FC, txInfo.mac, 2))).toBe(true);
      expect(tx.send(frameTo(GROUP_FB, txInfo.mac, 1))).toBe(true);
      await Bun.sleep(50);
      return got.includes(1);
    }, 5000);
    expect(got).not.toContain(2);
  };
  return { name: `vif${a.domid}.0`, rx, rxInfo, tx, txInfo, statuses, got, filtered };
}

test("a 2-queue guest: a group added on queue 1's tx ring lets that group's frames in on queue 0 (one list per vif, as netback's)", async () => {
  const { name, rx, rxInfo, statuses, filtered } = await winAndSender(2);
  expect(rxInfo.queues.length).toBe(2);
  await until("request seen", async () => (await vif(name)).multicastControl, 5000);
  // Flooded (multicast) frames reach a multi-queue vif on its queue 0; the ADD goes on queue 1.
  const add = rx.multicast("add", GROUP_FB, 1);
  await until("ADD answered", () => statuses.has(add), 5000);
  expect(statuses.get(add)).toBe(NETIF_RSP_OKAY);
  await filtered("after the ADD");
  expect(rx.queueStats()[0]!.counters.rxPackets).toBeGreaterThan(0);
});

for (const vcpus of [1, 2]) {
  test(`restart: a ${vcpus}-queue guest's groups carry over (queue 0's journal), so the filter goes on as it asked without the guest adding them again`, async () => {
    const { name, rx, rxInfo, statuses, filtered } = await winAndSender(vcpus);
    expect(rxInfo.queues.length).toBe(vcpus);
    await until("request seen", async () => (await vif(name)).multicastControl, 5000);
    const add = rx.multicast("add", GROUP_FB, vcpus - 1);
    await until("ADD answered", () => statuses.get(add) === NETIF_RSP_OKAY, 5000);
    // The added group arrives, another group is filtered: before and after the restart alike.
    await filtered("before");
    await fx.restartDaemon();
    await until("taken over", async () => (await vif(name).catch(() => null))?.multicastControl === true, 5000);
    await filtered("after the restart");
    expect(rx.counters.connects).toBe(1);
  });
}
