// Guest to guest through a Linux bridge, the way a dom0 wires vifs: the daemon (control plane and
// two workers) gives each of two Linux-faithful netfront guests a TAP, both TAPs on one bridge.
// A frame leaves alice's tx ring, goes through worker A into her TAP, across the kernel's bridge,
// out of bob's TAP into worker B and into bob's rx ring. Root only; every name is private to
// this run (qn* bridge, qb* TAPs), never a real backend's vif<domid>.<devid>.
import { describe, expect, test } from "bun:test";
import { parseMac, type Netfront } from "../../src/sim/netfront/index.ts";
import { until } from "../backend/sim-host.ts";
import { ip, linkExists } from "../net/tap-helper.ts";
import { canUseTapAndIp, daemonFixture } from "../support/daemon-fixture.ts";

/** A local experimental ethertype (IEEE 802): no stack on the host or in the guests acts on it. */
const ETHERTYPE = [0x88, 0xb5];

interface Guest {
  nf: Netfront;
  domid: number;
  mac: Uint8Array;
  rx: Uint8Array[];
}

describe.skipIf(!canUseTapAndIp())("guest to guest through a Linux bridge", () => {
  const fx = daemonFixture();

  async function bridgedGuests(prefix: string): Promise<[Guest, Guest]> {
    // The TAPs go with the daemon; the bridge is the fixture's to remove.
    const bridge = fx.bridge("br");
    await fx.startHost();
    await fx.startDaemon(["--peer", "tap", "--bridge", bridge, "--vifname-prefix", prefix, "--workers", "2"], { log: "debug" });
    const guests: Guest[] = [];
    for (const name of ["alice", "bob"]) {
      const { domid, nf, info } = await fx.guest(name, {}, { domain: { nics: [{ bridge }] } });
      const g: Guest = { nf, domid, mac: parseMac(info.mac)!, rx: [] };
      // Only our test frames count: whatever else the kernel floods onto the bridge is not ours.
      nf.onReceive((f) => f.length >= 14 && f[12] === ETHERTYPE[0] && f[13] === ETHERTYPE[1] && g.rx.push(f.slice()));
      guests.push(g);
    }
    const master = (tap: string) => /master (\S+)/.exec(ip("-o", "link", "show", "dev", tap))?.[1];
    expect(guests.map((g) => master(`${prefix}${g.domid}.0`))).toEqual([bridge, bridge]);
    return guests as [Guest, Guest];
  }

  /** Frames of every size 14..1514 from `a` to `b`, each payload distinct per size and direction. */
  function frames(a: Guest, b: Guest, seed: number): Uint8Array[] {
    const out: Uint8Array[] = [];
    for (let size = 14; size <= 1514; size++) {
      const f = new Uint8Array(size);
      f.set(b.mac, 0);
      f.set(a.mac, 6);
      f.set(ETHERTYPE, 12);
      for (let i = 14; i < size; i++) f[i] = (i * 31 + size * 7 + seed) & 0xff;
      out.push(f);
    }
    return out;
  }

  /** Sends `sent` from a to b, paced by what has arrived (netfront's backlog holds 1000 frames). */
  async function cross(a: Guest, b: Guest, sent: Uint8Array[]): Promise<Uint8Array[]> {
    const before = b.rx.length;
    for (let i = 0; i < sent.length; i += 200) {
      const upTo = Math.min(i + 200, sent.length);
      for (const f of sent.slice(i, upTo)) expect(a.nf.send(f)).toBe(true);
      await until(`${upTo} frames at domain ${b.domid}`, () => b.rx.length - before >= upTo, 10_000);
    }
    return b.rx.slice(before);
  }

  async function counters(domid: number): Promise<Record<string, number>> {
    return (await fx.vif<{ counters: Record<string, number> }>(`vif${domid}.0`)).counters;
  }

  test("frames of every size 14..1514 cross from one guest to the other intact and in order, and back", async () => {
    const prefix = `qb${(process.pid % 1296).toString(36)}x`;
    const [alice, bob] = await bridgedGuests(prefix);

    const there = frames(alice, bob, 1);
    const gotThere = await cross(alice, bob, there);
    expect(gotThere.length).toBe(there.length);
    for (let i = 0; i < there.length; i++) expect(gotThere[i]).toEqual(there[i]!);

    const back = frames(bob, alice, 2);
    const gotBack = await cross(bob, alice, back);
    expect(gotBack.length).toBe(back.length);
    for (let i = 0; i < back.length; i++) expect(gotBack[i]).toEqual(back[i]!);

    for (const g of [alice, bob]) {
      const c = await counters(g.domid);
      expect({ tx_errors: c.tx_errors, tx_drops: c.tx_drops, rx_drops: c.rx_drops }).toEqual({ tx_errors: 0, tx_drops: 0, rx_drops: 0 });
      expect(c.tx_packets).toBeGreaterThanOrEqual(1501);
      expect(c.rx_packets).toBeGreaterThanOrEqual(1501);
    }
    // One vif per worker: the bridge, not a worker, joined the two.
    expect(new Set(Object.values(fx.daemon.pool.snapshot().vifs))).toEqual(new Set([0, 1]));

    // The daemon's stop takes its TAPs off the bridge and out of the system. The kernel drops a
    // TAP when the last reference to its fd goes, and an io_uring lets go of its references from a
    // kernel work queue after the ring closes: so "soon", not "at once".
    await fx.stopDaemon();
    const taps = [alice, bob].map((g) => `${prefix}${g.domid}.0`);
    await until("the TAPs gone", () => taps.every((t) => !linkExists(t)), 5000);
  }, 60_000);
});
