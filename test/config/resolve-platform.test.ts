import { expect, test } from "bun:test";
import { ConfigError, resolvePlatform } from "../../src/config/index.ts";

const probe = (...present: string[]) => ({ exists: (p: string) => present.includes(p) });

test("an explicit platform is kept without probing", () => {
  const never = { exists: () => { throw new Error("probed"); } };
  expect(resolvePlatform({ platform: "sim" }, never)).toBe("sim");
  expect(resolvePlatform({ platform: "xen" }, never)).toBe("xen");
});

test("auto picks xen with the evtchn device and a xenstore endpoint", () => {
  expect(resolvePlatform({ platform: "auto" }, probe("/dev/xen/evtchn", "/var/run/xenstored/socket"))).toBe("xen");
  expect(resolvePlatform({ platform: "auto" }, probe("/dev/xen/evtchn", "/dev/xen/xenbus"))).toBe("xen");
});

test("auto refuses a host lacking either half, and says how to use the simulated host", () => {
  for (const p of [probe(), probe("/dev/xen/evtchn"), probe("/dev/xen/xenbus", "/var/run/xenstored/socket")]) {
    let err: unknown;
    try {
      resolvePlatform({ platform: "auto" }, p);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const msg = (err as Error).message;
    expect(msg).not.toContain("\n");
    expect(msg).toContain("npm run sim -- up");
    expect(msg).toContain("npm run qnicd -- --platform sim");
  }
});
