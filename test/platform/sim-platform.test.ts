import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createDomain, openGuestDomain, type GuestDomain } from "../../src/sim/hypervisor/index.ts";
import { simPaths } from "../../src/sim/paths.ts";
import { GrantCopyBatch, openPlatform, PlatformError, SimPlatform } from "../../src/platform/index.ts";
import { freshHost } from "../sim/hypervisor/helpers.ts";

let host: ReturnType<typeof freshHost>;
let domid: number;
let guest: GuestDomain;

beforeAll(() => {
  host = freshHost("platform");
  domid = createDomain(host.dir, { memoryPages: 16 });
  guest = openGuestDomain(host.dir, domid);
});
afterAll(() => host.cleanup());

describe("openPlatform", () => {
  test("kind sim opens a SimPlatform for dom0 with the xenstored socket as its xenstore path", () => {
    const p = openPlatform({ kind: "sim", dir: host.dir, domid: 0 });
    expect(p).toBeInstanceOf(SimPlatform);
    expect(p.kind).toBe("sim");
    expect(p.domid).toBe(0);
    expect(p.xenstorePath).toBe(simPaths(host.dir).xenstoredSocket);
    expect(structuredClone(p.config)).toEqual({ kind: "sim", dir: host.dir, domid: 0 });
    p.close();
  });

  test("a run directory without a simulated hypervisor is a one-line error saying what to do", () => {
    const empty = mkdtempSync(join(tmpdir(), "qnicd-empty-"));
    try {
      expect(() => openPlatform({ kind: "sim", dir: empty, domid: 0 })).toThrow(/no simulated hypervisor .*initHypervisor/);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });

  test("a nonexistent backend domain is refused", () => {
    expect(() => openPlatform({ kind: "sim", dir: host.dir, domid: 42 })).toThrow(/dom42 does not exist/);
  });

  test("close() closes the devices it opened, and they refuse further use", () => {
    const p = openPlatform({ kind: "sim", dir: host.dir, domid: 0 });
    const ev = p.openEventChannelDevice();
    const gnt = p.openGrantDevice();
    const gp = guest.evtchn.bindUnboundPort(0);
    ev.bindInterdomain(domid, gp);
    p.close();
    expect(() => ev.notify(1)).toThrow(/closed device/);
    expect(() => gnt.map(domid, [8], false)).toThrow(/closed grant device/);
    expect(() => p.openGrantDevice()).toThrow(/after close/);
    // the port it bound was closed: bindable again
    const p2 = openPlatform({ kind: "sim", dir: host.dir, domid: 0 });
    const ev2 = p2.openEventChannelDevice();
    expect(ev2.bindInterdomain(domid, gp)).toBeGreaterThan(0);
    p2.close();
    guest.evtchn.unbind(gp);
  });
});

describe("GrantCopyBatch", () => {
  test("native memory of capacity * 24 bytes, zeroed, with statuses readable through its view", () => {
    const b = new GrantCopyBatch(10);
    expect(b.capacity).toBe(10);
    expect(b.buffer.byteLength).toBeGreaterThanOrEqual(240);
    expect(new Uint8Array(b.buffer).every((x) => x === 0)).toBe(true);
    expect(b.addr % 64).toBe(0);
    b.free();
  });

  test("a bad capacity is refused", () => {
    expect(() => new GrantCopyBatch(0)).toThrow(/capacity/);
  });
});

describe("in a Worker", () => {
  test("a worker opens its own platform from the config and copies and binds through it", async () => {
    const frame = guest.allocPage();
    guest.pageView(frame).set([1, 2, 3, 4, 5, 6, 7, 8]);
    const gref = guest.grantAccess(0, frame, true);
    const gp = guest.evtchn.bindUnboundPort(0);
    const worker = new Worker(join(import.meta.dir, "fixtures", "platform-worker.ts"));
    const messages: any[] = [];
    let wake: (() => void) | undefined;
    worker.onmessage = (e) => {
      messages.push(e.data);
      wake?.();
    };
    const next = async () => {
      while (messages.length === 0) await new Promise<void>((r) => (wake = r));
      return messages.shift();
    };
    worker.postMessage({ config: { kind: "sim", dir: host.dir, domid: 0 }, domid, gref, port: gp });
    const r = await next();
    expect(r.error).toBeUndefined();
    expect(r).toMatchObject({ failed: 0, status: 0, bytes: [1, 2, 3, 4, 5, 6, 7, 8], bindEvents: 1 });
    guest.evtchn.notify(gp);
    worker.postMessage("read");
    expect(await next()).toEqual({ fired: [r.bp] });
    worker.terminate();
    guest.evtchn.unbind(gp);
  });
});
