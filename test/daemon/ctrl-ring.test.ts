// The daemon against the sim netfront with its opt-in control ring, set up as the Windows PV
// drivers set theirs up: feature-ctrl-ring offered, ctrl-ring-ref and event-channel-ctrl read at
// connect, the hash configured over the ring (Toeplitz, mapping, 40-byte key, every type), and
// frames to that guest carrying a hash extra with the value the test vectors give; a neighbour
// without a control ring gets none. Then hostile variants: each costs that guest its vif alone
// (req_prod far ahead) or an INVALID_PARAMETER status (an oversized key, a mapping entry past the
// queues), never the daemon or the neighbour.
import { expect, test } from "bun:test";
import { join } from "node:path";
import { parseMac, type NetfrontOptions, type RxMeta } from "../../src/sim/netfront/index.ts";
import * as C from "../../src/xen/ctrl-netif.ts";
import { XenbusState as S } from "../../src/xen/xenbus-state.ts";
import { until } from "../backend/sim-host.ts";
import { ipFrame, VECTORS } from "../net/hash-frames.ts";
import { daemonFixture } from "../support/daemon-fixture.ts";

const fx = daemonFixture();

async function start() {
  const host = await fx.startHost();
  const daemon = await fx.startDaemon(["--workers", "1", "--peer", "switch"], { log: "error" });
  return { host, daemon };
}

/** A guest whose rx is kept in `got`. */
async function guest(name: string, ctrlRing?: NetfrontOptions["ctrlRing"]) {
  const { domid, nf, info } = await fx.guest(name, { ctrlRing });
  const got: { frame: Uint8Array; meta: RxMeta }[] = [];
  nf.onReceive((frame, meta) => got.push({ frame, meta }));
  return { domid, nf, info, got };
}

/** The test vectors' TCP/IPv4 or TCP/IPv6 flow, from `src` to `dst`'s MAC. */
function flowFrame(v6: boolean, dst: string, src: string): Uint8Array {
  const f = ipFrame({ v6 });
  f.set(parseMac(dst)!, 0);
  f.set(parseMac(src)!, 6);
  return f;
}

test("a guest with the control ring gets feature-ctrl-ring, configures Toeplitz hashing, and receives hash extras with the vectors' values", async () => {
  const { host } = await start();
  const alice = await guest("alice", { hash: { mapping: new Array(128).fill(0) } });
  const bob = await guest("bob");
  expect(await host.xs.read(`/local/domain/0/backend/vif/${alice.domid}/0/feature-ctrl-ring`)).toBe("1");
  expect(alice.info.ctrl).toBeDefined();
  expect(bob.info.ctrl).toBeUndefined();
  const results = await alice.nf.hashConfigured()!;
  expect(results.map((r) => [r.type, r.status])).toEqual([
    [C.XEN_NETIF_CTRL_TYPE_SET_HASH_ALGORITHM, 0],
    [C.XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING_SIZE, 0],
    [C.XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING, 0],
    [C.XEN_NETIF_CTRL_TYPE_SET_HASH_KEY, 0],
    [C.XEN_NETIF_CTRL_TYPE_SET_HASH_FLAGS, 0],
  ]);
  // GET requests work on the live ring too.
  expect(await alice.nf.ctrl!.request(C.XEN_NETIF_CTRL_TYPE_GET_HASH_FLAGS)).toEqual({ type: C.XEN_NETIF_CTRL_TYPE_GET_HASH_FLAGS, status: 0, data: 0xf });
  expect((await alice.nf.ctrl!.request(C.XEN_NETIF_CTRL_TYPE_ADD_GREF_MAPPING, 0, 1)).status).toBe(C.XEN_NETIF_CTRL_STATUS_NOT_SUPPORTED);

  expect(bob.nf.send(flowFrame(false, alice.info.mac, bob.info.mac))).toBe(true);
  expect(bob.nf.send(flowFrame(true, alice.info.mac, bob.info.mac))).toBe(true);
  expect(alice.nf.send(flowFrame(false, bob.info.mac, alice.info.mac))).toBe(true);
  await until("alice received both flows", () => alice.got.length >= 2, 5000);
  expect(alice.got.map((g) => g.meta.hash)).toEqual([
    { type: C._XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP, alg: C.XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ, value: VECTORS.ipv4Tcp },
    { type: C._XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP, alg: C.XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ, value: VECTORS.ipv6Tcp },
  ]);
  expect(Array.from(alice.got[0]!.frame)).toEqual(Array.from(flowFrame(false, alice.info.mac, bob.info.mac)));
  await until("bob received alice's frame", () => bob.got.length >= 1, 5000);
  expect(bob.got[0]!.meta.hash).toBeUndefined();
  expect(alice.nf.broken || bob.nf.broken).toBe(false);
});

test("hostile: an oversized key and a mapping entry past the queues are INVALID_PARAMETER; the vif stays up and hashes with nothing of either", async () => {
  await start();
  const key = patternKey();
  const mallory = await guest("mallory", { hash: { key }, hostile: "oversized-key" });
  const trudy = await guest("trudy", { hostile: "mapping-beyond-queues" });
  const bob = await guest("bob");
  expect((await mallory.nf.hashConfigured()!).map((r) => r.status)).toEqual([0, 0, 0, C.XEN_NETIF_CTRL_STATUS_INVALID_PARAMETER, 0]);
  expect((await trudy.nf.hashConfigured()!).map((r) => r.status)).toEqual([0, 0, C.XEN_NETIF_CTRL_STATUS_INVALID_PARAMETER, 0, 0]);
  // mallory's key was refused: the hash runs with the all-zero key it started with, whose hash is 0.
  expect(bob.nf.send(flowFrame(false, mallory.info.mac, bob.info.mac))).toBe(true);
  expect(bob.nf.send(flowFrame(false, trudy.info.mac, bob.info.mac))).toBe(true);
  await until("both received", () => mallory.got.length >= 1 && trudy.got.length >= 1, 5000);
  expect(mallory.got[0]!.meta.hash).toEqual({ type: C._XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP, alg: 1, value: 0 });
  expect(trudy.got[0]!.meta.hash?.value).toBe(VECTORS.ipv4Tcp);
  for (const g of [mallory, trudy, bob]) expect(g.nf.backendState).toBe(S.Connected);
});

test("hostile: ctrl req_prod far ahead disables that vif alone (error node, Closing); its neighbour keeps forwarding", async () => {
  const { host, daemon } = await start();
  const mallory = await guest("mallory", { hostile: "req-prod-far-ahead" });
  const alice = await guest("alice");
  const bob = await guest("bob");
  await mallory.nf.hashConfigured();
  const err = `/local/domain/0/error/backend/vif/${mallory.domid}/0/error`;
  const node = await until("mallory's error node", () => host.xs.tryRead(err), 5000);
  expect(node).toMatch(/^71 data path: ctrl req_prod 0x1005 is more than a ring ahead of 0x5$/);
  await until("mallory's backend Closing or Closed", async () => Number(await host.xs.tryRead(`/local/domain/0/backend/vif/${mallory.domid}/0/state`)) >= S.Closing, 5000);
  for (let i = 0; i < 20; i++) expect(alice.nf.send(flowFrame(false, bob.info.mac, alice.info.mac))).toBe(true);
  await until("bob received alice's 20 frames", () => bob.got.length >= 20, 5000);
  expect(daemon.vifs().find((v) => v.domid === alice.domid)).toBeDefined();
  expect(await host.xs.read(`/local/domain/0/backend/vif/${alice.domid}/0/state`)).toBe(String(S.Connected));
});

/** A 40-byte key unlike the default one. */
function patternKey(): Uint8Array {
  return Uint8Array.from({ length: 40 }, (_, i) => (i * 37 + 11) & 0xff);
}

test("restart: a vif with a control ring is taken over; the ring answers on and the hash the guest configured carries on (the guest never configures it again)", async () => {
  await start();
  const alice = await guest("alice", {});
  const bob = await guest("bob");
  expect((await alice.nf.hashConfigured()!).every((r) => r.status === 0)).toBe(true);
  expect(bob.nf.send(flowFrame(false, alice.info.mac, bob.info.mac))).toBe(true);
  await until("alice received", () => alice.got.length >= 1, 5000);
  expect(alice.got[0]!.meta.hash?.value).toBe(VECTORS.ipv4Tcp);
  await fx.restartDaemon();
  await until("alice taken over", () => fx.daemon.vifs().some((v) => v.domid === alice.domid && v.slot !== null), 5000);
  // The same ring, attached where it stopped: requests keep being answered, in order.
  expect(await alice.nf.ctrl!.request(C.XEN_NETIF_CTRL_TYPE_GET_HASH_MAPPING_SIZE)).toEqual({ type: C.XEN_NETIF_CTRL_TYPE_GET_HASH_MAPPING_SIZE, status: 0, data: 128 });
  // The configuration came back from the journal: the types as set, hash extras as before.
  expect(await alice.nf.ctrl!.request(C.XEN_NETIF_CTRL_TYPE_GET_HASH_FLAGS)).toEqual({ type: C.XEN_NETIF_CTRL_TYPE_GET_HASH_FLAGS, status: 0, data: C.XEN_NETIF_CTRL_HASH_TYPES_ALL });
  expect(bob.nf.send(flowFrame(false, alice.info.mac, bob.info.mac))).toBe(true);
  await until("alice received again", () => alice.got.length >= 2, 5000);
  expect(alice.got[1]!.meta.hash?.value).toBe(VECTORS.ipv4Tcp);
  // A change after the take-over is journaled too: algorithm NONE survives the next restart as NONE.
  expect((await alice.nf.ctrl!.request(C.XEN_NETIF_CTRL_TYPE_SET_HASH_ALGORITHM, C.XEN_NETIF_CTRL_HASH_ALGORITHM_NONE)).status).toBe(0);
  await fx.restartDaemon();
  await until("alice taken over again", () => fx.daemon.vifs().some((v) => v.domid === alice.domid && v.slot !== null), 5000);
  expect((await alice.nf.ctrl!.request(C.XEN_NETIF_CTRL_TYPE_GET_HASH_FLAGS)).status).toBe(C.XEN_NETIF_CTRL_STATUS_NOT_SUPPORTED);
  expect(bob.nf.send(flowFrame(false, alice.info.mac, bob.info.mac))).toBe(true);
  await until("alice received a third time", () => alice.got.length >= 3, 5000);
  expect(alice.got[2]!.meta.hash).toBeUndefined();
  expect(alice.nf.state).toBe(S.Connected);
  expect(alice.nf.counters.connects).toBe(1);
});

test("the guest process (src/sim/netfront/main.ts --ctrl-ring) reports its control ring's setup and the hash extras it receives", async () => {
  const { host } = await start();
  const d = await host.ts.create("alice", { vifs: 1 });
  const main = join(import.meta.dir, "../../src/sim/netfront/main.ts");
  const bad = Bun.spawnSync([process.execPath, main, "--dir", host.dir, "--domid", String(d.domid), "--ctrl-hostile", "oversized-key"], { stderr: "pipe" });
  expect([bad.exitCode, bad.stderr.toString()]).toEqual([1, expect.stringContaining("--ctrl-hostile needs --ctrl-ring")]);
  const proc = Bun.spawn([process.execPath, main, "--dir", host.dir, "--domid", String(d.domid), "--devid", "0", "--ctrl-ring", "--probe-wait-ms", "2000"], { stdin: "pipe", stdout: "pipe", stderr: "ignore" });
  const lines: Record<string, unknown>[] = [];
  void (async () => {
    let buf = "";
    for await (const chunk of proc.stdout as ReadableStream<Uint8Array>) {
      buf += new TextDecoder().decode(chunk);
      for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
        lines.push(JSON.parse(buf.slice(0, nl)));
        buf = buf.slice(nl + 1);
      }
    }
  })();
  try {
    const ctrl = (await until("the ctrl line", () => lines.find((l) => l.event === "ctrl"), 10_000)) as { results: { status: number }[] };
    expect(ctrl.results.map((r) => r.status)).toEqual([0, 0, 0, 0, 0]);
    const mac = ((await until("connected", () => lines.find((l) => l.event === "connected"))) as { mac: string }).mac;
    const bob = await guest("bob");
    expect(bob.nf.send(flowFrame(false, mac, bob.info.mac))).toBe(true);
    const rx = (await until("an rx line", () => lines.find((l) => l.event === "rx"), 5000)) as { hash?: unknown };
    expect(rx.hash).toEqual({ type: C._XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP, alg: C.XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ, value: VECTORS.ipv4Tcp });
  } finally {
    proc.kill("SIGKILL");
    await proc.exited;
  }
});
