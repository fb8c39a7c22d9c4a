// A guest that keeps adding multicast groups (the sim netfront's Windows-style multicast control,
// driven past the list's end): netback caps the list at XEN_NETBK_MCAST_MAX (64) and answers the
// 65th MCAST_ADD with NETIF_RSP_ERROR; nothing else happens to the vif, the list holds exactly the
// first 64, and the neighbours on the same worker lose nothing. Not an advisory of its own: the
// bound every guest-grown list needs.
import { afterEach, expect, test } from "bun:test";
import { createNetfront, type Netfront } from "../../src/sim/netfront/index.ts";
import { NETIF_RSP_ERROR, NETIF_RSP_OKAY } from "../../src/xen/netif.ts";
import { until } from "../backend/sim-host.ts";
import { startHostileRig, type HostileRig } from "./daemon-rig.ts";

let rig: HostileRig | undefined;
let nf: Netfront | undefined;
afterEach(async () => {
  await nf?.close();
  nf = undefined;
  await rig?.close();
  rig = undefined;
});

test("65 MCAST_ADDs: 64 OKAY, the 65th ERROR, the vif stays up, a DEL makes room again; neighbours lose nothing", async () => {
  rig = await startHostileRig();
  const d = await rig.host.ts.create("win", { vifs: 1 });
  const statuses = new Map<number, number>();
  nf = await createNetfront({ dir: rig.host.dir, domid: d.domid, devid: 0, resetWaitMs: 2000, probeWaitMs: 2000, multicastControl: true, onTxResponse: (id, s) => statuses.set(id, s) });
  await nf.whenConnected(5000);
  const group = (i: number) => `01:00:5e:00:01:${i.toString(16).padStart(2, "0")}`;
  const ids: number[] = [];
  for (let i = 0; i < 65; i++) {
    let id = -1;
    // The ring holds 256 slots; each request takes two: wait for room when needed.
    await until(`room for ADD ${i}`, () => (id = nf!.multicast("add", group(i))) >= 0 || false, 5000);
    ids.push(id);
    await until(`ADD ${i} answered`, () => statuses.has(id), 5000);
    const st = statuses.get(id);
    statuses.delete(id); // ids are reused
    expect(st, `ADD ${i}`).toBe(i < 64 ? NETIF_RSP_OKAY : NETIF_RSP_ERROR);
  }
  const name = `vif${d.domid}.0`;
  const vif = async () => (await (await fetch(`${rig!.daemon.http.url}/vifs/${name}`)).json()) as { backendState: { number: number }; counters: Record<string, number> };
  let v = await vif();
  expect([v.counters.tx_mcast_requests, v.counters.tx_mcast_refused, v.counters.tx_errors]).toEqual([65, 1, 1]);
  expect(v.backendState.number).toBe(4); // still Connected: a refused add is not a violation
  expect(nf.broken).toBe(false);

  // A DEL frees a place: the next ADD is accepted again.
  const del = nf.multicast("del", group(0));
  await until("DEL answered", () => statuses.has(del), 5000);
  expect(statuses.get(del)).toBe(NETIF_RSP_OKAY);
  statuses.delete(del);
  const again = nf.multicast("add", group(64));
  await until("ADD after DEL answered", () => statuses.has(again), 5000);
  expect(statuses.get(again)).toBe(NETIF_RSP_OKAY);

  await rig.neighboursForward(200);
  v = await vif();
  expect([v.counters.tx_mcast_requests, v.counters.tx_mcast_refused]).toEqual([67, 1]);
});
