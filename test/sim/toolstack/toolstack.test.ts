// The toolstack against the sim xenstored: the nodes, order and permissions libxl uses, and its
// waits (create: InitWait; detach/destroy: Closed), with shortened timeouts where a test needs one.
import { afterEach, expect, test } from "bun:test";
import { simPaths } from "../../../src/sim/paths.ts";
import { permsToString, XenstoreClient } from "../../../src/xenstore/index.ts";
import { ToolstackError } from "../../../src/sim/toolstack/toolstack.ts";
import { dump, playBackend, startHarness, until, type Harness } from "./harness.ts";

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const B = (domid: number, devid: number, kind = "vif") => `/local/domain/0/backend/${kind}/${domid}/${devid}`;
const F = (domid: number, devid: number) => `/local/domain/${domid}/device/vif/${devid}`;
const rel = (tree: Record<string, string>, base: string) =>
  Object.fromEntries(Object.entries(tree).filter(([k]) => k.startsWith(`${base}/`)).map(([k, v]) => [k.slice(base.length + 1), v]));

test("create --no-wait writes libxl's vif nodes, values and permissions", async () => {
  h = await startHarness();
  const xs = await h.client();
  const d = await h.ts.create("guest1", { vifs: 2, noWait: true });
  expect(d.domid).toBe(1);
  const mac0 = d.nics[0]!.mac;
  expect(mac0).toMatch(/^00:16:3e:[0-7][0-9a-f]:[0-9a-f]{2}:[0-9a-f]{2}$/);
  expect(d.nics[1]!.mac).not.toBe(mac0);

  const tree = await dump(xs, "/");
  expect(rel(tree, B(1, 0))).toEqual({
    frontend: F(1, 0),
    "frontend-id": "1",
    online: "1",
    state: "1",
    script: "/etc/xen/scripts/vif-bridge",
    mac: mac0,
    bridge: "xenbr0",
    handle: "0",
    type: "vif",
    "hotplug-status": "",
  });
  expect(rel(tree, F(1, 0))).toEqual({ backend: B(1, 0), "backend-id": "0", state: "1", handle: "0", mac: mac0, mtu: "1500", trusted: "1" });
  expect(rel(tree, F(1, 1))).toMatchObject({ handle: "1", backend: B(1, 1) });
  // libxl keeps its own copy of the backend entries plus both paths.
  expect(rel(tree, "/libxl/1/device/vif/0")).toMatchObject({ frontend: F(1, 0), backend: B(1, 0), mac: mac0, state: "1" });

  // Frontend: the guest owns it, the backend domain may read. F/mtu: the other way round.
  const perms = async (p: string) => permsToString(await xs.getPerms(p));
  expect(await perms(F(1, 0))).toBe("n1,r0");
  for (const k of ["backend-id", "state", "handle", "mac", "trusted"]) expect(await perms(`${F(1, 0)}/${k}`)).toBe("n1,r0");
  expect(await perms(`${F(1, 0)}/mtu`)).toBe("n0,r1");
  // Backend: owned by the backend domain, the guest may read.
  expect(await perms(B(1, 0))).toBe("n0,r1");

  // The domain itself: dom0 owns its directory (guest reads), the guest owns what it must write.
  expect(rel(tree, "/local/domain/1")).toMatchObject({ name: "guest1", domid: "1", "control/platform-feature-xs_reset_watches": "1" });
  const vm = tree["/local/domain/1/vm"]!;
  expect(vm).toMatch(/^\/vm\/[0-9a-f-]{36}$/);
  expect(tree[`${vm}/name`]).toBe("guest1");
  expect(await perms("/local/domain/1")).toBe("n0,r1");
  expect(await perms("/local/domain/1/device")).toBe("n0,r1");
  expect(await perms("/local/domain/1/control/shutdown")).toBe("n1");
  expect(await perms("/local/domain/1/data")).toBe("n1");
  expect(await perms("/libxl/1")).toBe("n0");
});

test("one transaction per vif, in libxl__device_generic_add's order", async () => {
  h = await startHarness();
  await h.ts.create("g", { vifs: 1, noWait: true, nics: [{ mac: "00:16:3e:01:02:03" }] });
  // The transaction that checks the libxl path, then everything it did, without the tx ids.
  const L = "/libxl/1/device/vif/0";
  const start = h.trace.findIndex((e) => e.op === "READ" && e.args[0] === L);
  expect(start).toBeGreaterThan(0);
  const tx = h.trace[start]!.tx;
  expect(tx).not.toBe(0);
  const ops = h.trace.filter((e) => e.tx === tx).map((e) => `${e.op} ${e.args.join(" ")}`);
  const b = B(1, 0);
  const f = F(1, 0);
  const fe = "n1 r0";
  const be = "n0 r1";
  const back = ["frontend-id 1", "online 1", "state 1", "script /etc/xen/scripts/vif-bridge", "mac 00:16:3e:01:02:03", "bridge xenbr0", "handle 0", "type vif", "hotplug-status "];
  expect(ops).toEqual([
    `READ ${L}`,
    `RM ${L}`,
    `WRITE ${L}/frontend ${f}`,
    `WRITE ${L}/backend ${b}`,
    `RM ${f}`,
    `MKDIR ${f}`,
    `SET_PERMS ${f} ${fe}`,
    `WRITE ${f}/backend ${b}`,
    ...["backend-id 0", "state 1", "handle 0", "mac 00:16:3e:01:02:03", "trusted 1"].flatMap((kv) => {
      const [k] = kv.split(" ");
      return [`WRITE ${f}/${kv}`, `SET_PERMS ${f}/${k} ${fe}`];
    }),
    `WRITE ${f}/mtu 1500`,
    `SET_PERMS ${f}/mtu ${be}`,
    `RM ${b}`,
    `MKDIR ${b}`,
    `SET_PERMS ${b} ${be}`,
    `WRITE ${b}/frontend ${f}`,
    ...back.map((kv) => `WRITE ${b}/${kv}`),
    ...back.map((kv) => `WRITE ${L}/${kv}`),
    "TRANSACTION_END T",
  ]);
});

test("a backend watching its directory sees the committed nodes and the order of its own path's writes", async () => {
  h = await startHarness();
  const xs = await h.client();
  const events: string[] = [];
  await xs.watch("/local/domain/0/backend", (p) => events.push(p));
  await h.ts.create("g", { vifs: 1, noWait: true, nics: [{ mtu: 9000, vifname: "vif-g", rate: { bytesPerInterval: 125000, intervalUsecs: 50000 } }] });
  const b = B(1, 0);
  await until("backend events", () => events.includes(`${b}/hotplug-status`));
  const keys = events.filter((p) => p.startsWith(`${b}/`)).map((p) => p.slice(b.length + 1));
  expect(keys).toEqual(["frontend", "frontend-id", "online", "state", "script", "vifname", "mac", "rate", "mtu", "bridge", "handle", "type", "hotplug-status"]);
  expect(await xs.read(`${b}/mtu`)).toBe("9000");
  expect(await xs.read(`${b}/rate`)).toBe("125000,50000");
  expect(await xs.read(`${F(1, 0)}/mtu`)).toBe("9000");
});

test("create waits for InitWait, then writes hotplug-status like vif-bridge; --backend-type qnic", async () => {
  h = await startHarness();
  const be = await playBackend(await h.client(), { kind: "qnic" });
  const t0 = Date.now();
  const d = await h.ts.create("g", { vifs: 2, backendKind: "qnic" });
  expect(Date.now() - t0).toBeLessThan(5000);
  const xs = await h.client();
  for (const devid of [0, 1]) {
    expect(await xs.read(`${B(1, devid, "qnic")}/state`)).toBe("2");
    expect(await xs.read(`${B(1, devid, "qnic")}/hotplug-status`)).toBe("connected");
    expect(await xs.read(`${F(1, devid)}/backend`)).toBe(B(1, devid, "qnic"));
  }
  expect(be.seen.filter((s) => s.state === "1").length).toBe(2);
  expect(d.nics.map((n) => n.backend)).toEqual([B(1, 0, "qnic"), B(1, 1, "qnic")]);
});

test("create fails with libxl's messages when no backend answers, and removes the domain", async () => {
  h = await startHarness({ initTimeoutMs: 200, destroyTimeoutMs: 200 });
  const xs = await h.client();
  const released: string[] = [];
  await xs.watch("@releaseDomain", (p) => released.push(p));
  const t0 = Date.now();
  const err = await h.ts.create("g", { vifs: 1 }).catch((e) => e);
  const took = Date.now() - t0;
  expect(err).toBeInstanceOf(ToolstackError);
  expect(err.message).toMatch(/no backend brought vif 1\.0 to InitWait within 0\.2 s.*destroyed/);
  expect(h.logLines).toContain(`libxl: error: libxl_device.c:device_backend_callback: Domain 1:unable to add device with path ${B(1, 0)} - rc -9`);
  expect(h.logLines).toContain("libxl: error: libxl_create.c:domcreate_attach_devices: Domain 1:unable to add vif devices");
  // It waited the init timeout, then libxl's destroy waited for Closed too.
  expect(took).toBeGreaterThanOrEqual(400);
  expect(h.hv.calls).toEqual(["create 1", "destroy 1"]);
  const tree = await dump(xs, "/");
  expect(Object.keys(tree).filter((k) => k.startsWith("/local/domain/1") || k.startsWith("/libxl/1") || k.startsWith("/local/domain/0/backend") || k.startsWith("/vm/"))).toEqual([]);
  await until("@releaseDomain", () => released.length === 2);
});

test("@introduceDomain fires on create, @releaseDomain on destroy; destroy removes everything", async () => {
  h = await startHarness();
  const xs = await h.client();
  const ev: string[] = [];
  await xs.watch("@introduceDomain", (p) => ev.push(p));
  await xs.watch("@releaseDomain", (p) => ev.push(p));
  await until("registration fires", () => ev.length === 2);
  const be = await playBackend(await h.client());
  await h.ts.create("g", { vifs: 1 });
  expect(await xs.isDomainIntroduced(1)).toBe(true);
  await until("@introduceDomain", () => ev.length === 3);
  expect(ev[2]).toBe("@introduceDomain");
  const before = await dump(xs, "/");
  const vm = before["/local/domain/1/vm"]!;

  await h.ts.destroy("g");
  await until("@releaseDomain", () => ev.length === 4);
  expect(ev[3]).toBe("@releaseDomain");
  // The backend saw online=0 with state=5 (forced removal), then the nodes went.
  expect(be.seen.find((s) => s.state === "5")).toMatchObject({ online: "0" });
  const after = await dump(xs, "/");
  const left = Object.keys(after).filter((k) => k.startsWith("/local/domain/1") || k.startsWith("/libxl/1") || k.startsWith(vm) || k.includes("/backend/vif"));
  expect(left).toEqual([]);
  // libxl__xs_path_cleanup removed the empty parents too.
  expect(after["/local/domain/0/backend"]).toBeUndefined();
  expect(h.hv.calls).toEqual(["create 1", "destroy 1"]);
  expect(await xs.isDomainIntroduced(1)).toBe(false);
  expect(await h.ts.list()).toMatchObject([{ name: "Domain-0", domid: 0 }]);
});

test("network-detach writes online=0 and state=5 in one transaction, waits for Closed, then deletes", async () => {
  h = await startHarness();
  const be = await playBackend(await h.client(), { closeDelayMs: 300 });
  await h.ts.create("g", { vifs: 2 });
  const xs = await h.client();
  // An observer reads B/state at every change under B: "6" must come before B disappears.
  const states: (string | undefined)[] = [];
  await xs.watch(B(1, 1), async () => states.push(await xs.tryRead(`${B(1, 1)}/state`)));
  h.trace.length = 0;
  const t0 = Date.now();
  await h.ts.networkDetach("g", "1");
  const took = Date.now() - t0;

  const online = h.trace.find((e) => e.op === "WRITE" && e.args[0] === `${B(1, 1)}/online`)!;
  const state = h.trace.find((e) => e.op === "WRITE" && e.args[0] === `${B(1, 1)}/state`)!;
  expect(online.args[1]).toBe("0");
  expect(state.args[1]).toBe("5");
  expect(online.tx).not.toBe(0);
  expect(state.tx).toBe(online.tx);
  // Deletion only after the backend's 6, which came 300 ms after it saw 5.
  expect(took).toBeGreaterThanOrEqual(300);
  expect(be.seen.find((s) => s.path === `${B(1, 1)}/state` && s.state === "5")).toMatchObject({ online: "0" });
  await until("B removed", () => states.at(-1) === undefined);
  const gone = states.indexOf(undefined);
  expect(states.slice(0, gone)).toContain("6");
  expect(states.slice(0, gone).at(-1)).toBe("6");
  expect(await xs.tryRead(B(1, 1))).toBeUndefined();
  expect(await xs.tryRead(F(1, 1))).toBeUndefined();
  expect(await xs.tryRead("/libxl/1/device/vif/1")).toBeUndefined();
  expect(await xs.read(`${B(1, 0)}/state`)).toBe("2"); // the other vif is untouched
  expect(h.logLines.filter((l) => l.includes("error"))).toEqual([]);
});

test("network-detach with a silent backend: forced after the timeout, nodes still removed, libxl's errors", async () => {
  h = await startHarness({ destroyTimeoutMs: 150 });
  await h.ts.create("g", { vifs: 1, noWait: true });
  const xs = await h.client();
  const t0 = Date.now();
  const err = await h.ts.networkDetach("g", "0").catch((e) => e);
  const took = Date.now() - t0;
  expect(err).toBeInstanceOf(ToolstackError);
  expect(err.message).toBe("libxl_device_nic_del failed.");
  // libxl: first wait (force auto) times out, a forced retry waits again, then the nodes go.
  expect(took).toBeGreaterThanOrEqual(300);
  expect(h.logLines).toEqual([
    "libxl: debug: libxl_device.c:device_backend_callback: Domain 1:Timeout reached, initiating forced remove",
    `libxl: error: libxl_device.c:device_backend_callback: Domain 1:unable to remove device with path ${B(1, 0)} - rc -9`,
    "libxl: error: libxl_device.c:device_addrm_aocomplete: Domain 1:Unable to remove vif with id 0",
  ]);
  expect(await xs.tryRead(B(1, 0))).toBeUndefined();
  expect(await xs.tryRead(F(1, 0))).toBeUndefined();
  expect(await xs.tryRead("/libxl/1/device/vif/0")).toBeUndefined();
});

test("network-attach takes the next devid; detach by MAC; unknown devices and domains are one clear line", async () => {
  h = await startHarness();
  await playBackend(await h.client());
  await h.ts.create("g", { vifs: 1 });
  const nic = await h.ts.networkAttach("g", { mac: "00:16:3e:aa:bb:cc" });
  expect(nic.devid).toBe(1);
  const xs = await h.client();
  expect(await xs.read(`${B(1, 1)}/mac`)).toBe("00:16:3e:aa:bb:cc");
  expect(await xs.read(`${B(1, 1)}/hotplug-status`)).toBe("connected");
  await h.ts.networkDetach("1", "00:16:3e:AA:BB:CC");
  expect(await xs.tryRead(B(1, 1))).toBeUndefined();
  await expect(h.ts.networkDetach("g", "7")).rejects.toThrow("Unknown device 7.");
  await expect(h.ts.networkDetach("nope", "0")).rejects.toThrow("nope is an invalid domain identifier (rc=-6)");
  await expect(h.ts.create("g")).rejects.toThrow(/already exists/);
});

test("list shows every domain by name", async () => {
  h = await startHarness();
  await h.ts.create("alpha", { noWait: true, memoryMb: 64 });
  await h.ts.create("beta", { noWait: true });
  const l = await h.ts.list();
  expect(l.map((d) => [d.name, d.domid])).toEqual([
    ["Domain-0", 0],
    ["alpha", 1],
    ["beta", 2],
  ]);
  expect(l[1]!.memMb).toBe(64);
});

test("the permissions hold for the guest itself, over its own xenstored socket", async () => {
  h = await startHarness();
  await h.ts.create("g", { vifs: 1, noWait: true });
  const guest = await XenstoreClient.connect({ path: simPaths(h.dir).domainSocket(1), reconnect: { enabled: false } });
  try {
    // Its frontend: writable (netfront's rings and state go here); relative paths are its own.
    await guest.write("device/vif/0/state", "4");
    await guest.write("device/vif/0/tx-ring-ref", "8");
    expect(await guest.read("device/vif/0/mtu")).toBe("1500");
    await expect(guest.write("device/vif/0/mtu", "9000")).rejects.toMatchObject({ code: "EACCES" });
    // The backend: readable, not writable. Its own domain directory: readable, control/shutdown writable.
    expect(await guest.read(`${B(1, 0)}/mac`)).toMatch(/^00:16:3e:/);
    await expect(guest.write(`${B(1, 0)}/state`, "4")).rejects.toMatchObject({ code: "EACCES" });
    expect(await guest.read("name")).toBe("g");
    await expect(guest.write("name", "evil")).rejects.toMatchObject({ code: "EACCES" });
    await guest.write("control/shutdown", "poweroff");
    // Another guest's nodes are out of reach.
    await h.ts.create("other", { vifs: 1, noWait: true });
    await expect(guest.read(`${F(2, 0)}/mac`)).rejects.toMatchObject({ code: "EACCES" });
  } finally {
    guest.close();
  }
});

test("a booted guest's drivers start once its vifs reach InitWait, and die before its devices go", async () => {
  const calls: string[] = [];
  let xs: XenstoreClient | undefined;
  const guests = {
    start: (domid: number, devid: number, o: { ip?: string }) => void calls.push(`start ${domid}.${devid} ${o.ip ?? "-"}`),
    // What the backend sees when the guest dies: the vif is still there, Connected or not.
    kill: async (domid: number) => void calls.push(`kill ${domid} online=${await xs!.tryRead(`${B(domid, 0)}/online`)}`),
  };
  h = await startHarness({ guests });
  xs = await h.client();
  await playBackend(await h.client());
  await h.ts.create("booted", { vifs: 2, boot: { ip: "10.0.0.2" } });
  expect(calls).toEqual(["start 1.0 10.0.0.2", "start 1.1 -"]);
  // InitWait came first: the guest's drivers never see a backend still Initialising.
  expect(await xs.read(`${B(1, 0)}/state`)).toBe("2");
  await h.ts.networkAttach("booted", {}, { boot: {} });
  expect(calls.at(-1)).toBe("start 1.2 -");
  await h.ts.destroy("booted");
  expect(calls.at(-1)).toBe("kill 1 online=1");
});

test("a guest's vCPUs reach its nodes, xl list and every netfront it boots, which sizes its queues by them", async () => {
  const starts: { vif: string; vcpus?: number }[] = [];
  const guests = { start: (domid: number, devid: number, o: { vcpus?: number }) => void starts.push({ vif: `${domid}.${devid}`, vcpus: o.vcpus }), kill: async () => {} };
  h = await startHarness({ guests });
  const xs = await h.client();
  await playBackend(await h.client());
  const d = await h.ts.create("wide", { vifs: 1, vcpus: 4, boot: {} });
  expect(await xs.directory(`/local/domain/${d.domid}/cpu`)).toEqual(["0", "1", "2", "3"]);
  expect(await xs.read(`/local/domain/${d.domid}/cpu/3/availability`)).toBe("online");
  await h.ts.networkAttach("wide", {}, { boot: {} });
  const narrow = await h.ts.create("narrow", { vifs: 1, boot: {} });
  expect(starts).toEqual([
    { vif: `${d.domid}.0`, vcpus: 4 },
    { vif: `${d.domid}.1`, vcpus: 4 },
    { vif: `${narrow.domid}.0`, vcpus: 1 },
  ]);
  expect((await h.ts.list()).map((l) => [l.name, l.vcpus])).toEqual([["Domain-0", 2], ["wide", 4], ["narrow", 1]]);
});

test("booting a guest without a guest runner is one clear error and the domain is not left behind", async () => {
  h = await startHarness();
  await playBackend(await h.client());
  await expect(h.ts.create("nodriver", { vifs: 1, boot: {} })).rejects.toThrow("no guest runner");
  expect(await h.ts.nameToDomid("nodriver")).toBeUndefined();
});
