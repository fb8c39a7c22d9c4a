import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { dlopen, FFIType } from "bun:ffi";
import { existsSync, readdirSync, readlinkSync } from "node:fs";
import {
  createDomain, destroyDomain, openGuestDomain, ECS_FREE, ECS_INTERDOMAIN, ECS_UNBOUND, EV_MASKED, EV_PENDING,
  type GuestDomain, SimEventChannelDevice,
} from "../../../src/sim/hypervisor/index.ts";
import { simPaths } from "../../../src/sim/paths.ts";
import { openPlatform, PlatformError, type EventChannelDevice, type Platform } from "../../../src/platform/index.ts";
import { Child, freshHost } from "./helpers.ts";

const libc = dlopen("libc.so.6", { poll: { args: [FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i32 } }).symbols;
/** poll(2) on one fd for POLLIN with a 0 timeout: is it readable right now? */
function readable(fd: number, timeoutMs = 0): boolean {
  const pfd = new Int32Array(2); // struct pollfd { int fd; short events; short revents; }
  pfd[0] = fd;
  new Int16Array(pfd.buffer)[2] = 1; // POLLIN
  const r = libc.poll(pfd, 1, timeoutMs);
  return r === 1 && (new Int16Array(pfd.buffer)[3] & 1) === 1;
}

let host: ReturnType<typeof freshHost>;
let domid: number;
let guest: GuestDomain;
let platform: Platform;
let be: EventChannelDevice;
const out = new Uint32Array(256);

beforeAll(() => {
  host = freshHost("evtchn");
  domid = createDomain(host.dir, { memoryPages: 16 });
  guest = openGuestDomain(host.dir, domid);
  platform = openPlatform({ kind: "sim", dir: host.dir, domid: 0 });
  be = platform.openEventChannelDevice();
});
afterAll(() => {
  platform.close();
  host.cleanup();
});

function read(dev: EventChannelDevice): number[] {
  const n = dev.readPending(out);
  return Array.from(out.subarray(0, n)).sort((a, b) => a - b);
}
function unmask(dev: EventChannelDevice, ...ports: number[]) {
  dev.unmask(Uint32Array.from(ports), ports.length);
}
/** A connected pair, with the conservative bind-time event already consumed and unmasked. */
function connect(): { gp: number; bp: number } {
  const gp = guest.evtchn.bindUnboundPort(0);
  const bp = be.bindInterdomain(domid, gp);
  expect(read(be)).toEqual([bp]);
  unmask(be, bp);
  return { gp, bp };
}
const gev = () => guest.evtchn as SimEventChannelDevice;

describe("binding", () => {
  test("bind interdomain to an unbound port; both ends see each other", () => {
    const gp = guest.evtchn.bindUnboundPort(0);
    expect(gev().portState(gp)).toMatchObject({ state: ECS_UNBOUND, remoteDomid: 0 });
    const bp = be.bindInterdomain(domid, gp);
    expect(gev().portState(gp)).toEqual({ state: ECS_INTERDOMAIN, remoteDomid: 0, remotePort: bp, ev: 0 });
    expect((be as SimEventChannelDevice).portState(bp)).toMatchObject({ state: ECS_INTERDOMAIN, remoteDomid: domid, remotePort: gp });
    // Like Xen, the binder's new port starts pending (notifications to the unbound port may be lost).
    expect(read(be)).toEqual([bp]);
    unmask(be, bp);
    be.unbind(bp);
  });

  test("binding a port offered to another domain is EINVAL", () => {
    const gp = guest.evtchn.bindUnboundPort(5);
    try {
      be.bindInterdomain(domid, gp);
      throw new Error("bound");
    } catch (e) {
      expect(e).toBeInstanceOf(PlatformError);
      expect((e as PlatformError).code).toBe("EINVAL");
      expect((e as PlatformError).message).toContain(`dom${domid} port ${gp}`);
    }
    guest.evtchn.unbind(gp);
  });

  test("binding a port that is already bound, free, or out of range is EINVAL", () => {
    const { gp, bp } = connect();
    expect(() => be.bindInterdomain(domid, gp)).toThrow(/EINVAL/);
    expect(() => be.bindInterdomain(domid, 1000)).toThrow(/EINVAL/);
    expect(() => be.bindInterdomain(domid, 0)).toThrow(/EINVAL/);
    expect(() => be.bindInterdomain(domid, 5000)).toThrow(/EINVAL/);
    be.unbind(bp);
    guest.evtchn.unbind(gp);
  });

  test("binding to a nonexistent domain is ESRCH", () => {
    expect(() => be.bindInterdomain(100, 1)).toThrow(/ESRCH/);
  });

  test("notify, unbind and unmask on a port this device does not own are refused or ignored", () => {
    const gp = guest.evtchn.bindUnboundPort(0);
    expect(() => be.notify(gp + 500)).toThrow(/ENOTCONN/);
    expect(() => be.unbind(gp + 500)).toThrow(/ENOTCONN/);
    unmask(be, gp + 500); // ignored, like a write() of a foreign port to /dev/xen/evtchn
    guest.evtchn.unbind(gp);
  });
});

describe("delivery", () => {
  test("notify fires the peer's port once; it stays masked until unmask", () => {
    const { gp, bp } = connect();
    be.notify(bp);
    expect(read(guest.evtchn)).toEqual([gp]);
    expect(read(guest.evtchn)).toEqual([]);
    expect(gev().portState(gp).ev & EV_MASKED).toBe(EV_MASKED);
    unmask(guest.evtchn, gp);
    expect(gev().portState(gp).ev).toBe(0);
    be.notify(bp);
    expect(read(guest.evtchn)).toEqual([gp]);
    unmask(guest.evtchn, gp);
    // and the other direction
    guest.evtchn.notify(gp);
    expect(read(be)).toEqual([bp]);
    unmask(be, bp);
    be.unbind(bp);
  });

  test("N notifications while masked coalesce into one event after unmask", () => {
    const { gp, bp } = connect();
    guest.evtchn.notify(gp);
    expect(read(be)).toEqual([bp]);
    for (let i = 0; i < 100; i++) guest.evtchn.notify(gp);
    expect(read(be)).toEqual([]); // masked: nothing more to read
    expect((be as SimEventChannelDevice).portState(bp).ev & EV_PENDING).toBe(EV_PENDING);
    unmask(be, bp); // pending: fires again, exactly once
    expect(read(be)).toEqual([bp]);
    expect(read(be)).toEqual([]);
    unmask(be, bp); // nothing pending any more: no event
    expect(read(be)).toEqual([]);
    expect(readable(be.fd)).toBe(false);
    be.unbind(bp);
  });

  test("notifications before the reader reads coalesce too (already fired, not yet read)", () => {
    const { gp, bp } = connect();
    guest.evtchn.notify(gp);
    guest.evtchn.notify(gp);
    guest.evtchn.notify(gp);
    expect(read(be)).toEqual([bp]);
    unmask(be, bp);
    expect(read(be)).toEqual([bp]); // the ones after the first fire were pending: one more event
    unmask(be, bp);
    expect(read(be)).toEqual([]);
    be.unbind(bp);
  });

  test("many ports firing at once are all delivered (more than the socket's datagram queue)", () => {
    const pairs = Array.from({ length: 40 }, () => connect());
    for (const { gp } of pairs) guest.evtchn.notify(gp);
    const got = read(be);
    expect(got).toEqual(pairs.map((p) => p.bp).sort((a, b) => a - b));
    expect(read(be)).toEqual([]);
    for (const { bp } of pairs) {
      unmask(be, bp);
      be.unbind(bp);
    }
  });

  test("readPending respects the size of `out`; the rest stays readable", () => {
    const pairs = Array.from({ length: 5 }, () => connect());
    for (const { gp } of pairs) guest.evtchn.notify(gp);
    const small = new Uint32Array(2);
    const seen: number[] = [];
    for (let i = 0; i < 5 && seen.length < 5; i++) {
      const n = be.readPending(small);
      seen.push(...small.subarray(0, n));
    }
    expect(seen.sort((a, b) => a - b)).toEqual(pairs.map((p) => p.bp).sort((a, b) => a - b));
    for (const { bp } of pairs) be.unbind(bp);
  });

  test("notify on an unbound (peer closed) port is silently dropped", () => {
    const { gp, bp } = connect();
    guest.evtchn.unbind(gp);
    be.notify(bp); // no error, nothing delivered
    expect(read(guest.evtchn)).toEqual([]);
    be.unbind(bp);
  });

  test("the fd is pollable: readable exactly while a fired port is unread", () => {
    const { gp, bp } = connect();
    expect(readable(be.fd)).toBe(false);
    guest.evtchn.notify(gp);
    expect(readable(be.fd)).toBe(true);
    expect(read(be)).toEqual([bp]);
    expect(readable(be.fd)).toBe(false);
    guest.evtchn.notify(gp); // masked: no wake-up
    expect(readable(be.fd)).toBe(false);
    unmask(be, bp); // pending: wakes again
    expect(readable(be.fd)).toBe(true);
    read(be);
    unmask(be, bp);
    be.unbind(bp);
  });
});

describe("closing", () => {
  test("unbind returns the peer to unbound, and a new bind to it works", () => {
    const { gp, bp } = connect();
    be.unbind(bp);
    expect(gev().portState(gp)).toMatchObject({ state: ECS_UNBOUND, remoteDomid: 0 });
    expect((be as SimEventChannelDevice).portState(bp).state).toBe(ECS_FREE);
    const bp2 = be.bindInterdomain(domid, gp);
    expect(read(be)).toEqual([bp2]);
    unmask(be, bp2);
    guest.evtchn.notify(gp);
    expect(read(be)).toEqual([bp2]);
    be.unbind(bp2);
    guest.evtchn.unbind(gp);
  });

  test("closing a device unbinds its ports and the peers return to unbound", () => {
    const dev = platform.openEventChannelDevice();
    const gp = guest.evtchn.bindUnboundPort(0);
    dev.bindInterdomain(domid, gp);
    const sock = readdirSync(simPaths(host.dir).evtchnDir).length;
    dev.close();
    expect(gev().portState(gp).state).toBe(ECS_UNBOUND);
    expect(readdirSync(simPaths(host.dir).evtchnDir).length).toBe(sock - 1);
    const bp = be.bindInterdomain(domid, gp);
    be.unbind(bp);
    guest.evtchn.unbind(gp);
  });

  test("the ports of a process that died return to unbound when someone binds", async () => {
    const gp = guest.evtchn.bindUnboundPort(0);
    const child = new Child();
    const r = await child.call({ op: "bindAsBackend", dir: host.dir, domid, port: gp });
    expect(gev().portState(gp)).toMatchObject({ state: ECS_INTERDOMAIN, remotePort: r.port });
    expect(() => be.bindInterdomain(domid, gp)).toThrow(/EINVAL/); // its owner is alive
    await child.kill();
    const bp = be.bindInterdomain(domid, gp); // the dead backend's port is closed first
    expect(gev().portState(gp)).toMatchObject({ state: ECS_INTERDOMAIN, remoteDomid: 0, remotePort: bp });
    expect(read(be)).toEqual([bp]);
    unmask(be, bp);
    be.notify(bp);
    expect(read(guest.evtchn)).toEqual([gp]);
    unmask(guest.evtchn, gp);
    be.unbind(bp);
    guest.evtchn.unbind(gp);
  });

  test("destroying a domain closes its ports; the backend's ports return to unbound", () => {
    const d = createDomain(host.dir, { memoryPages: 4 });
    const g = openGuestDomain(host.dir, d);
    const gp = g.evtchn.bindUnboundPort(0);
    const bp = be.bindInterdomain(d, gp);
    read(be);
    unmask(be, bp);
    destroyDomain(host.dir, d);
    expect((be as SimEventChannelDevice).portState(bp)).toMatchObject({ state: ECS_UNBOUND, remoteDomid: d });
    be.notify(bp); // dropped, no error
    be.unbind(bp);
    g.close();
  });

  test("a backend keeps no socket to a peer device that is gone: its fds return to what they were", () => {
    const sockets = () => readdirSync("/proc/self/fd").filter((fd) => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`).startsWith("socket:");
      } catch {
        return false; // the readdir's own fd, closed by now
      }
    }).length;
    const base = sockets();
    for (let i = 0; i < 30; i++) {
      // A guest's own event-channel device, notified once by the backend, then gone.
      const peer = new SimEventChannelDevice(host.dir, domid);
      const gp = peer.bindUnboundPort(0);
      const bp = be.bindInterdomain(domid, gp);
      read(be);
      unmask(be, bp);
      be.notify(bp);
      expect(read(peer)).toEqual([gp]);
      peer.close();
      be.unbind(bp);
    }
    expect(sockets()).toBe(base);
  });

  test("a closed device's socket file is removed", () => {
    const dev = platform.openEventChannelDevice();
    const files = readdirSync(simPaths(host.dir).evtchnDir);
    dev.close();
    const after = readdirSync(simPaths(host.dir).evtchnDir);
    expect(after.length).toBe(files.length - 1);
    expect(() => dev.notify(1)).toThrow(/closed device/);
    expect(existsSync(simPaths(host.dir).evtchnDir)).toBe(true);
  });
});
