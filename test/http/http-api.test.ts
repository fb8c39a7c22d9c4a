// Real HTTP requests against a started server, with a fake control plane and a real stats arena that
// a real Worker writes into.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHttpApp, startHttpServer, type HealthSnapshot, type HttpServer, type VifSnapshot } from "../../src/http/index.ts";
import { StatsArena, VifCounters, zeroVifStats } from "../../src/stats/index.ts";
import { createLogger } from "../../src/log.ts";
import { XenbusState } from "../../src/xen/xenbus-state.ts";
import { publishingWriter, type StatsWriter } from "../stats/stats-writer.ts";

/** Response bodies are whatever the API answers; the assertions pin their shape. */
const json = (res: Response): Promise<any> => res.json();

const arena = StatsArena.create({ workers: 2, slotsPerWorker: 4 });
const published = { tx_packets: 1000, tx_bytes: 64_000, rx_packets: 600, rx_bytes: 2 ** 40, ffi_calls: 40, syscalls: 16, carrier: 1 };

let health: HealthSnapshot = { xenstore: "connected", uptimeSeconds: 12, workers: { configured: 2, running: 2 } };
let vifs: VifSnapshot[] = [];
let failWith: Error | null = null;
const logged: string[] = [];

let writer: StatsWriter;
let server: HttpServer;

const get = (path: string, init?: RequestInit) => fetch(server.url + path, init);

beforeAll(async () => {
  const slot3 = arena.allocate(1);
  writer = await publishingWriter(arena, slot3, published); // parked from here on: it answers nothing
  vifs = [
    {
      domid: 3, devid: 0, backendState: XenbusState.Connected, frontendState: XenbusState.Connected, worker: 1,
      mac: "00:16:3e:00:00:03", features: { "feature-sg": true, "multi-queue-num-queues": 1 }, slot: slot3,
      settings: { rate: { bytes: 20000, usecs: 20000 }, multicastControl: true },
    },
    {
      domid: 4, devid: 0, backendState: XenbusState.InitWait, frontendState: XenbusState.Initialising, worker: null,
      mac: null, features: {}, slot: null,
    },
  ];
  const app = createHttpApp({
    health: () => health,
    vifs: () => {
      if (failWith) throw failWith;
      return vifs;
    },
    stats: arena,
    log: createLogger({ level: "info", format: "text", write: (l) => logged.push(l) }),
  });
  server = startHttpServer(app, { host: "127.0.0.1", port: 0 });
});

afterAll(async () => {
  await server?.stop();
  await writer?.stop();
});

describe("GET /vifs/:name", () => {
  test("serves the vif with the counters its worker published, while that worker answers nothing", async () => {
    const res = await get("/vifs/vif3.0");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toStartWith("application/json");
    expect(await json(res)).toEqual({
      name: "vif3.0",
      domid: 3,
      devid: 0,
      backendState: { name: "Connected", number: 4 },
      frontendState: { name: "Connected", number: 4 },
      worker: 1,
      mac: "00:16:3e:00:00:03",
      features: { "feature-sg": true, "multi-queue-num-queues": 1 },
      hostSide: null,
      rate: { bytesPerInterval: 20000, intervalUsecs: 20000, bytesPerSecond: 1_000_000, text: "20000 bytes per 20000 us (1 MB/s)" },
      multicastControl: true,
      counters: { ...zeroVifStats(), ...published },
      derived: {
        ffi_calls_per_packet: 40 / 1600,
        syscalls_per_packet: 16 / 1600,
        notifies_sent_per_packet: 0,
        events_received_per_packet: 0,
        ffi_calls_per_mb: 40 / ((64_000 + 2 ** 40) / 1048576),
        syscalls_per_mb: 16 / ((64_000 + 2 ** 40) / 1048576),
        notifies_sent_per_mb: 0,
        events_received_per_mb: 0,
      },
      queues: [{ queue: 0, worker: 1, counters: { ...zeroVifStats(), ...published } }],
    });
  });

  test("a vif without a stats slot has null counters", async () => {
    const body = await json(await get("/vifs/vif4.0"));
    expect([body.backendState, body.counters, body.derived]).toEqual([{ name: "InitWait", number: 2 }, null, null]);
  });

  test("an unknown vif is a 404 naming it", async () => {
    const res = await get("/vifs/vif9.0");
    expect([res.status, await res.json()]).toEqual([404, { error: "no vif named vif9.0" }]);
  });

  test("a malformed name is a 400", async () => {
    for (const bad of ["vif3", "eth0", "vif3.0x", "vif-1.0", "VIF3.0", "vif3..0"]) {
      const res = await get(`/vifs/${bad}`);
      expect(res.status, bad).toBe(400);
      expect((await json(res)).error).toBe(`malformed vif name ${JSON.stringify(bad)}: expected vif<domid>.<devid>`);
    }
  });

  test("a vif whose slot was released meanwhile reads with null counters, not another vif's", async () => {
    const a = StatsArena.create({ workers: 1, slotsPerWorker: 1 });
    const old = a.allocate(0);
    a.release(old);
    const c = new VifCounters(a, a.allocate(0));
    c.tx_packets = 7;
    c.flush();
    const app = createHttpApp({ health: () => health, vifs: () => [{ ...vifs[0], slot: old }], stats: a });
    const body = await json(await app.request("/vifs/vif3.0"));
    expect(body.counters).toBeNull();
  });
});

describe("GET /vifs", () => {
  test("lists every vif and sums their counters", async () => {
    const body = await json(await get("/vifs"));
    expect(body.vifs.map((v: { name: string }) => v.name)).toEqual(["vif3.0", "vif4.0"]);
    expect(body.total.counters).toEqual({ ...zeroVifStats(), ...published });
    expect(body.direction).toContain("guest's side: tx = frames the guest sent");
    expect(body.total.derived.ffi_calls_per_packet).toBe(40 / 1600);
  });

  test("answers are never cached", async () => {
    expect((await get("/vifs")).headers.get("cache-control")).toBe("no-store");
  });
});

describe("GET /health", () => {
  test("is ok (200) with xenstore connected and every worker running", async () => {
    const res = await get("/health");
    expect([res.status, await res.json()]).toEqual([
      200,
      { status: "ok", xenstore: "connected", uptimeSeconds: 12, workers: { configured: 2, running: 2 } },
    ]);
  });

  test("is degraded (503) while xenstore reconnects or a worker is missing", async () => {
    const saved = health;
    try {
      for (const h of [
        { ...saved, xenstore: "reconnecting" as const },
        { ...saved, xenstore: "down" as const },
        { ...saved, workers: { configured: 2, running: 1 } },
      ]) {
        health = h;
        const res = await get("/health");
        expect(res.status).toBe(503);
        expect((await json(res)).status).toBe("degraded");
      }
    } finally {
      health = saved;
    }
  });
});

describe("errors", () => {
  test("an unknown route is a JSON 404", async () => {
    for (const [method, path] of [["GET", "/nope"], ["POST", "/vifs"], ["GET", "/vifs/vif3.0/extra"]]) {
      const res = await get(path, { method });
      expect([res.status, await res.json()]).toEqual([404, { error: `no route ${method} ${path}` }]);
    }
  });

  test("a failure while serving is a JSON 500 with one line, and is logged", async () => {
    failWith = new Error("backend table\nwas mid-update");
    try {
      const res = await get("/vifs");
      expect([res.status, await res.json()]).toEqual([500, { error: "backend table was mid-update" }]);
      expect(logged.at(-1)).toContain('http request failed method=GET path=/vifs err="backend table was mid-update"');
    } finally {
      failWith = null;
    }
  });
});

describe("the server", () => {
  test("reports the port it bound when asked for port 0", () => {
    expect(server.port).toBeGreaterThan(0);
    expect(server.url).toBe(`http://127.0.0.1:${server.port}`);
  });

  test("a port already in use is a one-line error naming the address", () => {
    const app = createHttpApp({ health: () => health, vifs: () => [], stats: arena });
    let err: any;
    try {
      startHttpServer(app, { host: "127.0.0.1", port: server.port });
    } catch (e) {
      err = e;
    }
    expect(err?.code).toBe("QNICD_HTTP_LISTEN");
    expect(err.message).toStartWith(`qnicd: --http: cannot listen on 127.0.0.1:${server.port}: `);
    expect(err.message).not.toContain("\n");
  });

  test("stop() closes the listener and may be called twice", async () => {
    const other = startHttpServer(createHttpApp({ health: () => health, vifs: () => [], stats: arena }), { host: "127.0.0.1", port: 0 });
    expect((await fetch(other.url + "/health")).status).toBe(200);
    await other.stop();
    await other.stop();
    await expect(fetch(other.url + "/health")).rejects.toThrow();
  });
});
