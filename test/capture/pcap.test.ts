// GET /vifs/:name/pcap on a daemon forwarding traffic: what tcpdump -r and tshark -r read from it
// (both directions, told apart), how many frames against the vif's counters, snaplen, the limits,
// a client that does not read, and every peer kind (switch, null, TAP).
import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createSocket } from "node:dgram";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startTrafficDaemon, type TrafficDaemon } from "../support/traffic-daemon.ts";
import { pcapngIfDrop, tcpdumpLines, tsharkFields } from "../support/pcap-tools.ts";
import { until } from "../backend/sim-host.ts";

const dir = mkdtempSync(join(tmpdir(), "qnicd-pcap-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;

/** Starts a capture; `body` resolves to the whole pcapng once the capture ends. */
async function capture(t: TrafficDaemon, vif: string, query: string) {
  const res = await fetch(`${t.daemon.http.url}/vifs/${vif}/pcap?${query}`);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toBe("application/x-pcapng");
  const body = res.arrayBuffer().then((b) => {
    const file = join(dir, `c${++files}.pcapng`);
    writeFileSync(file, new Uint8Array(b));
    return { file, bytes: new Uint8Array(b) };
  });
  return { body };
}

async function counters(t: TrafficDaemon, vif: string): Promise<Record<string, number>> {
  return ((await (await fetch(`${t.daemon.http.url}/vifs/${vif}`)).json()) as { counters: Record<string, number> }).counters;
}

describe("with the switch peer", () => {
  let t: TrafficDaemon;
  afterAll(async () => await t?.close());

  test("a capture over a time window holds every frame the vif's counters counted, each way, as tcpdump and tshark read it", async () => {
    t = await startTrafficDaemon();
    const before = await counters(t, t.alice.vif);
    const { body } = await capture(t, t.alice.vif, "count=100000&seconds=2");
    await t.arp(30);
    const { file, bytes } = await body;
    const after = await counters(t, t.alice.vif);
    const tx = after.tx_packets - before.tx_packets;
    const rx = after.rx_packets - before.rx_packets;
    expect([tx, rx, after.rx_drops - before.rx_drops]).toEqual([30, 30, 0]);
    const lines = tcpdumpLines(file);
    expect(lines.length).toBe(tx + rx);
    expect(lines.filter((l) => l.includes(`${t.alice.mac} > ff:ff:ff:ff:ff:ff`) && l.includes("Request who-has 10.0.0.2 tell 10.0.0.1")).length).toBe(30);
    expect(lines.filter((l) => l.includes(`> ${t.alice.mac}`) && l.includes(`Reply 10.0.0.2 is-at ${t.bob.mac}`)).length).toBe(30);
    // pcapng direction, from the host interface's side as on a Linux vif: In = from the guest.
    const rows = tsharkFields(file, ["frame.packet_flags_direction", "arp.opcode", "frame.len", "frame.cap_len"]);
    expect(rows.length).toBe(60);
    expect(rows.filter(([d, op]) => Number(d) === 1 && op === "1").length).toBe(30);
    expect(rows.filter(([d, op]) => Number(d) === 2 && op === "2").length).toBe(30);
    expect(rows.every(([, , len, cap]) => len === "42" && cap === "42")).toBe(true);
    expect(pcapngIfDrop(bytes)).toBe(0);
    const iface = tsharkFields(file, ["frame.interface_name"]);
    expect(iface[0]).toEqual([t.alice.vif]);
  });

  test("count= ends the capture at that many frames; snaplen= cuts each frame, keeping its original length", async () => {
    const { body } = await capture(t, t.bob.vif, "count=7&snaplen=20&seconds=30");
    const t0 = Date.now();
    await t.arp(10);
    const { file } = await body;
    expect(Date.now() - t0).toBeLessThan(10_000);
    const rows = tsharkFields(file, ["frame.len", "frame.cap_len"]);
    expect(rows).toEqual(Array.from({ length: 7 }, () => ["42", "20"]));
    expect(tcpdumpLines(file).length).toBe(7);
  });

  test("a client that does not read never holds the data path up; its frames are there when it reads", async () => {
    const res = await fetch(`${t.daemon.http.url}/vifs/${t.alice.vif}/pcap?count=1000000&seconds=2`);
    expect(res.status).toBe(200);
    const t0 = performance.now();
    await t.arp(300); // with nobody reading the capture
    expect(performance.now() - t0).toBeLessThan(8000);
    const bytes = new Uint8Array(await res.arrayBuffer());
    const file = join(dir, "slow.pcapng");
    writeFileSync(file, bytes);
    expect(tcpdumpLines(file).length + pcapngIfDrop(bytes)!).toBe(600);
  });

  test("parameters are validated: one-line 400s, 404 for an unknown vif, 409 for a vif not connected", async () => {
    const get = (q: string, vif = t.alice.vif) => fetch(`${t.daemon.http.url}/vifs/${vif}/pcap${q}`);
    const bad = async (q: string, status: number, msg: RegExp | string) => {
      const r = await get(q);
      expect(r.status).toBe(status);
      const e = ((await r.json()) as { error: string }).error;
      expect(e).toMatch(msg);
      expect(e).not.toContain("\n");
    };
    await bad("?count=0", 400, "count must be 1 to 1000000");
    await bad("?count=abc", 400, "count must be a whole number");
    await bad("?seconds=3601", 400, "seconds must be 1 to 3600");
    await bad("?snaplen=13", 400, "snaplen must be 14 to 65535");
    await bad("?secs=3", 400, 'unknown parameter "secs"');
    await bad("?queue=1", 400, `${t.alice.vif} has 1 queue: queue must be 0 to 0`);
    await bad("?queue=64", 400, "queue must be 0 to 63");
    const r = await get("", "vif999.0");
    expect(r.status).toBe(404);
    // A guest with no netfront running: its vif waits in InitWait.
    const d = await t.host.ts.create("carol", { vifs: 1 });
    await until("carol's vif seen", () => t.daemon.vifs().some((v) => v.domid === d.domid));
    const r2 = await get("", `vif${d.domid}.0`);
    expect(r2.status).toBe(409);
    expect(((await r2.json()) as { error: string }).error).toBe(`vif${d.domid}.0 is not connected (its frontend is Initialising): nothing to capture yet`);
  });
});

test("with the null peer: the guest's frames are captured (nothing comes back)", async () => {
  const t = await startTrafficDaemon(["--peer", "null"], { bob: false });
  try {
    const { body } = await capture(t, t.alice.vif, "count=12&seconds=10");
    await t.send(12);
    const { file } = await body;
    const rows = tsharkFields(file, ["frame.packet_flags_direction", "arp.opcode"]);
    expect(rows.length).toBe(12);
    expect(rows.every(([d, op]) => Number(d) === 1 && op === "1")).toBe(true);
  } finally {
    await t.close();
  }
});

function tapAllowed(): boolean {
  try {
    accessSync("/dev/net/tun", constants.R_OK | constants.W_OK);
    return process.getuid?.() === 0 && spawnSync("ip", ["-V"]).status === 0;
  } catch {
    return false;
  }
}

test.skipIf(!tapAllowed())("with the TAP peer: the host's ARP request and UDP datagram to the guest and the guest's ARP reply, each way", async () => {
  const prefix = `qp${(process.pid % 1000).toString(36)}x`;
  const t = await startTrafficDaemon(["--peer", "tap", "--vifname-prefix", prefix], { bob: false, aliceIp: "10.97.0.2" });
  const sock = createSocket("udp4");
  try {
    const ifname = `${prefix}${t.alice.domid}.0`;
    expect(spawnSync("ip", ["addr", "add", "10.97.0.1/24", "dev", ifname]).status).toBe(0);
    const { body } = await capture(t, t.alice.vif, "count=100000&seconds=3");
    await until("the guest's ARP reply learned by the host", async () => {
      sock.send("qnicd-capture", 9, "10.97.0.2");
      await Bun.sleep(50);
      return spawnSync("ip", ["neigh", "show", "10.97.0.2", "dev", ifname]).stdout.toString().includes(t.alice.mac);
    });
    sock.send("qnicd-capture", 9, "10.97.0.2");
    const { file } = await body;
    const rows = tsharkFields(file, ["frame.packet_flags_direction", "arp.opcode", "udp.dstport"]);
    expect(rows.some(([d, op]) => Number(d) === 2 && op === "1")).toBe(true); // who-has from the host, Out to the guest
    expect(rows.some(([d, op]) => Number(d) === 1 && op === "2")).toBe(true); // the guest's reply, In
    expect(rows.some(([d, , port]) => Number(d) === 2 && port === "9")).toBe(true); // the datagram, Out
    expect(tcpdumpLines(file, ["udp port 9"]).length).toBeGreaterThan(0);
  } finally {
    sock.close();
    await t.close();
  }
});
