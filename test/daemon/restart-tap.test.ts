// A restart keeps a vif's host side too: qnicd's TAPs are persistent, so after kill -9 the
// interface is still there, still a port of its bridge, and the next qnicd re-opens it by name and
// carries the guest's frames on it. A vif the toolstack removed while no qnicd ran has its TAP and
// journal removed when the next qnicd starts. Needs root (TAPs and a bridge).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { DemoGuests, type GuestShell } from "../../src/sim/demo/guest-process.ts";
import { QnicdProcess } from "../../src/sim/demo/qnicd-process.ts";
import { startHost, stopHost } from "../../src/sim/toolstack/host.ts";
import { simHypervisor } from "../../src/sim/toolstack/hypervisor.ts";
import { Toolstack } from "../../src/sim/toolstack/toolstack.ts";
import { XenstoreClient } from "../../src/xenstore/index.ts";
import { canUseTap, ip, linkExists } from "../net/tap-helper.ts";

const tag = (process.pid % 10000).toString(36);
const PREFIX = `qr${tag}`.slice(0, 8);
const BRIDGE = `qrbr${tag}`;
const HTTP_PORT = 19000 + (process.pid % 1000);

const master = (ifname: string) => {
  try {
    return basename(readlinkSync(`/sys/class/net/${ifname}/master`));
  } catch {
    return null;
  }
};
const rxPackets = (ifname: string) => Number(readFileSync(`/sys/class/net/${ifname}/statistics/rx_packets`, "utf8"));

describe.skipIf(!canUseTap())("restart with TAP peers", () => {
  let tmp: string;
  let dir: string;
  let xs: XenstoreClient;
  let guests: DemoGuests;
  let qnicd: QnicdProcess | undefined;
  let n = 0;
  const start = () =>
    QnicdProcess.start(
      ["--platform", "sim", "--sim-dir", dir, "--peer", "tap", "--bridge", BRIDGE, "--vifname-prefix", PREFIX, "--http", `127.0.0.1:${HTTP_PORT}`, "--workers", "1", "--max-queues", "2", "--on-exit", "keep"],
      join(tmp, `qnicd-${++n}.log`),
      `127.0.0.1:${HTTP_PORT}`,
    );

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), "qnicd-restart-tap-"));
    dir = join(tmp, "host");
    ip("link", "add", BRIDGE, "type", "bridge");
    ip("link", "set", BRIDGE, "up");
    await startHost(dir);
    xs = await XenstoreClient.connect({ path: join(dir, "xenstored", "socket"), reconnect: { enabled: false } });
    guests = new DemoGuests(dir);
    qnicd = await start();
  }, 60_000);

  afterAll(async () => {
    // The last daemon closes what is left, as a host going down for good does.
    if (qnicd?.running) await qnicd.kill();
    const last = await QnicdProcess.start(
      ["--platform", "sim", "--sim-dir", dir, "--peer", "tap", "--bridge", BRIDGE, "--vifname-prefix", PREFIX, "--http", `127.0.0.1:${HTTP_PORT}`, "--workers", "1", "--on-exit", "close"],
      join(tmp, "qnicd-final.log"),
      `127.0.0.1:${HTTP_PORT}`,
    ).catch(() => undefined);
    await last?.stop();
    await guests?.killAll();
    xs?.close();
    await stopHost(dir, { destroyTimeoutMs: 2000 });
    if (linkExists(BRIDGE)) ip("link", "del", BRIDGE);
    rmSync(tmp, { recursive: true, force: true });
  }, 60_000);

  test("kill -9: the TAP stays on its bridge, the next qnicd carries the guest's frames on it; a vif removed meanwhile loses its TAP and journal at the next start", async () => {
    const ts = new Toolstack({ xs, hv: simHypervisor(dir), guests, log: () => {} });
    const a = await ts.create("alice", { nics: [{ bridge: BRIDGE }], boot: { ip: "10.8.0.1" } });
    const b = await ts.create("bob", { nics: [{ bridge: BRIDGE }], boot: { ip: "10.8.0.2" } });
    const alice: GuestShell = guests.shell(a.domid);
    await alice.whenConnected(15_000);
    await guests.shell(b.domid).whenConnected(15_000);
    const tapA = `${PREFIX}${a.domid}.0`;
    const tapB = `${PREFIX}${b.domid}.0`;
    expect(master(tapA)).toBe(BRIDGE);

    await qnicd!.kill();
    // Persistent: the interface and its bridge port outlive the process that held its only fd.
    expect(linkExists(tapA)).toBe(true);
    expect(master(tapA)).toBe(BRIDGE);
    // While no qnicd runs, the toolstack gives up on bob's backend and removes its directory.
    await xs.rm(`/local/domain/0/backend/vif/${b.domid}`);
    const journals = join(dir, "qnicd", "sim-local-domain-0-backend-vif.vifs");
    expect(readdirSync(journals).sort()).toEqual([`vif${a.domid}.0.journal`, `vif${b.domid}.0.journal`]);

    qnicd = await start();
    const deadline = Date.now() + 10_000;
    while ((linkExists(tapB) || readdirSync(journals).length > 1) && Date.now() < deadline) await Bun.sleep(20);
    expect(linkExists(tapB)).toBe(false);
    expect(readdirSync(journals)).toEqual([`vif${a.domid}.0.journal`]);
    expect(await xs.read(`/local/domain/0/backend/vif/${a.domid}/0/state`)).toBe("4");
    expect(master(tapA)).toBe(BRIDGE);
    // Frames alice sends reach the TAP: qnicd writes them on it, the kernel counts them as rx.
    const before = rxPackets(tapA);
    const frame = new Uint8Array(60);
    frame.set([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x16, 0x3e, 0, 0, 1, 0x88, 0xb5]);
    for (let i = 0; i < 10; i++) alice.send(frame);
    const until = Date.now() + 5000;
    while (rxPackets(tapA) < before + 10 && Date.now() < until) await Bun.sleep(20);
    expect(rxPackets(tapA) - before).toBeGreaterThanOrEqual(10);
    expect(readFileSync(qnicd.logFile, "utf8")).toContain(`vif${b.domid}.0: removed while no qnicd ran: its journal and interface ${tapB} removed`);
    expect(existsSync(join(journals, `vif${b.domid}.0.journal`))).toBe(false);
  }, 90_000);

  test("kill -9 under a 2-queue vif: each queue has its journal, the next qnicd takes both over on the TAP's two queues without a reconnect", async () => {
    const ts = new Toolstack({ xs, hv: simHypervisor(dir), guests, log: () => {} });
    const c = await ts.create("carol", { nics: [{ bridge: BRIDGE }], vcpus: 2, boot: { ip: "10.8.0.3" } });
    const carol: GuestShell = guests.shell(c.domid);
    await carol.whenConnected(15_000);
    const tapC = `${PREFIX}${c.domid}.0`;
    const F = `/local/domain/${c.domid}/device/vif/0`;
    expect(await xs.read(`${F}/multi-queue-num-queues`)).toBe("2");
    const rxQueues = () => readdirSync(`/sys/class/net/${tapC}/queues`).filter((q) => q.startsWith("rx-")).length;
    expect(rxQueues()).toBe(2);
    const journals = join(dir, "qnicd", "sim-local-domain-0-backend-vif.vifs");
    expect(readdirSync(journals).filter((j) => j.startsWith(`vif${c.domid}.`)).sort()).toEqual([`vif${c.domid}.0.journal`, `vif${c.domid}.0.q1.journal`]);

    await qnicd!.kill();
    qnicd = await start();
    const deadline = Date.now() + 10_000;
    while (!readFileSync(qnicd.logFile, "utf8").includes(`vif${c.domid}.0: taken over from an earlier qnicd`) && Date.now() < deadline) await Bun.sleep(50);
    expect(readFileSync(qnicd.logFile, "utf8")).toMatch(new RegExp(`vif${c.domid}\\.0: taken over from an earlier qnicd without a reconnect.*queues=2`));
    expect(await xs.read(`/local/domain/0/backend/vif/${c.domid}/0/state`)).toBe("4");
    expect(await xs.read(`${F}/state`)).toBe("4");
    expect(rxQueues()).toBe(2);
    const v = (await (await fetch(`http://127.0.0.1:${HTTP_PORT}/vifs/vif${c.domid}.0`)).json()) as { queues: { counters: { carrier: number } | null }[] };
    expect(v.queues.map((q) => q.counters?.carrier)).toEqual([1, 1]);
    // Frames carol sends still reach the TAP (non-IP frames go out on queue 0).
    const before = rxPackets(tapC);
    const frame = new Uint8Array(60);
    frame.set([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x16, 0x3e, 0, 0, 3, 0x88, 0xb5]);
    for (let i = 0; i < 10; i++) carol.send(frame);
    const until = Date.now() + 5000;
    while (rxPackets(tapC) < before + 10 && Date.now() < until) await Bun.sleep(20);
    expect(rxPackets(tapC) - before).toBeGreaterThanOrEqual(10);
  }, 90_000);
});
