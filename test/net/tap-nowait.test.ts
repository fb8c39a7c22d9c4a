// TapPeer on an fd whose driver cannot take RWF_NOWAIT through io_uring (Debian 12's 6.1 kernel's TAP
// driver: there every frame failed with EOPNOTSUPP while poll() kept saying "readable", so a vif
// dropped everything and its worker spun). The setup probe catches it: auto falls back to plain
// reads and keeps io_uring for writes (which need no RWF_NOWAIT on a nonblocking fd), uring mode
// refuses with a line naming the cause. This host's TAP driver supports
// RWF_NOWAIT, so a /proc file (no FMODE_NOWAIT, as that TAP) stands in for the old driver.
import { expect, test } from "bun:test";
import { closeSync, openSync } from "node:fs";
import { TapPeer } from "../../src/net/tap.ts";
import { canUseTap, createTestTap, uniqueIfName } from "./tap-helper.ts";

test("an fd without nonblocking io_uring support: auto mode reads with plain I/O, writes through io_uring and says EOPNOTSUPP; uring mode refuses", () => {
  const fd = openSync("/proc/self/stat", "r");
  try {
    const p = new TapPeer("qnprobe", fd, { io: "auto" });
    expect(p.usesUring).toBe(false);
    expect(p.writesUseUring).toBe(true);
    expect(p.uringUnavailable).toBe("EOPNOTSUPP");
    expect(p.syscalls).toBe(0);
    p.close();
    expect(() => new TapPeer("qnprobe", fd, { io: "uring" })).toThrow(
      /^TAP qnprobe: io_uring_setup failed: EOPNOTSUPP \(this kernel's TAP driver cannot do nonblocking io_uring reads and writes, RWF_NOWAIT; use io: 'auto' or 'plain'\)$/,
    );
  } finally {
    closeSync(fd);
  }
});

test.skipIf(!canUseTap())("a TAP whose driver supports it keeps io_uring, and the probe costs no counted syscall", () => {
  const tap = createTestTap(uniqueIfName("nw"));
  try {
    const p = new TapPeer(tap.name, tap.fd, { io: "auto" });
    expect(p.usesUring).toBe(true);
    expect(p.uringUnavailable).toBeNull();
    expect(p.syscalls).toBe(0);
    p.close();
  } finally {
    tap.close();
  }
});
