// A daemon forwarding traffic on a simulated host, for tests of what it shows (/metrics, captures,
// the dashboard): qnicd in-process with the in-daemon switch (or another peer), and two guests,
// alice (10.0.0.1) and bob (10.0.0.2), whose sim netfronts answer ARP and ping. `arp(n)` has alice
// ask for bob n times: n broadcast frames alice -> bob and n replies bob -> alice, through qnicd.
import { loadConfig } from "../../src/config/index.ts";
import { startDaemon, type Daemon } from "../../src/daemon.ts";
import { createLogger } from "../../src/log.ts";
import { buildArp, createNetfront, parseIPv4, parseMac, type Netfront } from "../../src/sim/netfront/index.ts";
import { startSimHost, until, type SimHost } from "../backend/sim-host.ts";

export interface Guest {
  name: string;
  domid: number;
  vif: string;
  ip: string;
  mac: string;
  nf: Netfront;
}

export interface TrafficDaemon {
  host: SimHost;
  daemon: Daemon;
  alice: Guest;
  /** Absent with { bob: false }. */
  bob: Guest;
  logs: string[];
  /** alice asks for bob's MAC n times; resolves once alice has n more replies. */
  arp(n: number): Promise<void>;
  /** alice sends n ARP requests and waits only for their tx responses (for peers that answer nothing). */
  send(n: number): Promise<void>;
  close(): Promise<void>;
}

export async function startTrafficDaemon(extraArgs: string[] = ["--peer", "switch"], opts: { bob?: boolean; aliceIp?: string } = {}): Promise<TrafficDaemon> {
  const host = await startSimHost();
  const logs: string[] = [];
  const fronts: Netfront[] = [];
  let daemon: Daemon | undefined;
  try {
    const config = loadConfig({ argv: ["--platform", "sim", "--sim-dir", host.dir, "--http", "127.0.0.1:0", "--workers", "1", ...extraArgs], env: {} });
    daemon = await startDaemon(config, { log: createLogger({ level: "info", format: "text", write: (l) => logs.push(l) }) });
    const guest = async (name: string, ip: string): Promise<Guest> => {
      const d = await host.ts.create(name, { vifs: 1 });
      const nf = await createNetfront({ dir: host.dir, domid: d.domid, devid: 0, ip, resetWaitMs: 2000, probeWaitMs: 2000 });
      fronts.push(nf);
      const info = await nf.whenConnected(10_000);
      return { name, domid: d.domid, vif: `vif${d.domid}.0`, ip, mac: info.mac, nf };
    };
    const alice = await guest("alice", opts.aliceIp ?? "10.0.0.1");
    const bob = opts.bob === false ? (undefined as unknown as Guest) : await guest("bob", "10.0.0.2");
    const d = daemon;
    return {
      host,
      daemon: d,
      alice,
      bob,
      logs,
      async arp(n: number) {
        const want = alice.nf.counters.rxPackets + n;
        const frame = buildArp(1, parseMac(alice.mac)!, parseIPv4(alice.ip)!, new Uint8Array(6), parseIPv4(bob?.ip ?? "10.0.0.2")!);
        for (let i = 0; i < n; i++) {
          // The tx ring holds 256 requests: let a burst drain before adding to it.
          while (!alice.nf.send(frame)) await Bun.sleep(1);
          if (i % 64 === 63) await until("the burst answered", () => alice.nf.counters.rxPackets >= want - n + i - 63);
        }
        await until(`${n} ARP replies back at alice`, () => alice.nf.counters.rxPackets >= want, 10_000);
      },
      async send(n: number) {
        const want = alice.nf.counters.txRspOkay + n;
        const frame = buildArp(1, parseMac(alice.mac)!, parseIPv4(alice.ip)!, new Uint8Array(6), parseIPv4("10.0.0.2")!);
        for (let i = 0; i < n; i++) while (!alice.nf.send(frame)) await Bun.sleep(1);
        await until(`${n} tx responses at alice`, () => alice.nf.counters.txRspOkay >= want, 10_000);
      },
      async close() {
        for (const f of fronts.splice(0)) await f.close();
        await d.stop();
        await host.close();
      },
    };
  } catch (e) {
    for (const f of fronts.splice(0)) await f.close().catch(() => {});
    await daemon?.stop().catch(() => {});
    await host.close().catch(() => {});
    throw e;
  }
}
