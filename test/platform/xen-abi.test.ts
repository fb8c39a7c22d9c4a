// native/xendev.c writes its own copies of the gntdev / evtchn / gntalloc structs and ioctl numbers
// (so it builds without Xen headers). This compiles xendev.c together with Debian's libxen-dev
// headers into one program and compares every size, offset and ioctl number: a wrong offset there
// would corrupt guest memory on real Xen, where no test here can see it. Also checks the TS side
// (src/platform/xen.ts) agrees with the native library it loads. Behaviour is tested on real Xen
// (test/xen/e2e.test.ts), not against a fake device.
import { beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureDebPackages } from "../support/apt.ts";
import { GNTDEV_COPY_SEGMENT_SIZE, IOCTL_GNTDEV_GRANT_COPY, IOCTL_GNTDEV_MAP_GRANT_REF, IOCTL_GNTDEV_UNMAP_GRANT_REF } from "../../src/xen/grant-table.ts";
import { openPlatform, PlatformError } from "../../src/platform/index.ts";
import { xendev } from "../../src/platform/xen.ts";

const nativeDir = join(import.meta.dir, "..", "..", "native");

// [label, expression on xendev.c's types, expression on the headers' types]
const pairs: [string, string, string][] = [
  ["sizeof map_grant_ref", "sizeof(struct xd_map_grant_ref)", "sizeof(struct ioctl_gntdev_map_grant_ref)"],
  ["map count", "offsetof(struct xd_map_grant_ref, count)", "offsetof(struct ioctl_gntdev_map_grant_ref, count)"],
  ["map index", "offsetof(struct xd_map_grant_ref, index)", "offsetof(struct ioctl_gntdev_map_grant_ref, index)"],
  ["map refs", "offsetof(struct xd_map_grant_ref, refs)", "offsetof(struct ioctl_gntdev_map_grant_ref, refs)"],
  ["sizeof grant_ref", "sizeof(struct xd_grant_ref)", "sizeof(struct ioctl_gntdev_grant_ref)"],
  ["grant_ref domid", "offsetof(struct xd_grant_ref, domid)", "offsetof(struct ioctl_gntdev_grant_ref, domid)"],
  ["grant_ref ref", "offsetof(struct xd_grant_ref, ref)", "offsetof(struct ioctl_gntdev_grant_ref, ref)"],
  ["sizeof unmap_grant_ref", "sizeof(struct xd_unmap_grant_ref)", "sizeof(struct ioctl_gntdev_unmap_grant_ref)"],
  ["unmap index", "offsetof(struct xd_unmap_grant_ref, index)", "offsetof(struct ioctl_gntdev_unmap_grant_ref, index)"],
  ["unmap count", "offsetof(struct xd_unmap_grant_ref, count)", "offsetof(struct ioctl_gntdev_unmap_grant_ref, count)"],
  ["sizeof copy segment", "sizeof(struct xd_copy_seg)", "sizeof(struct ioctl_gntdev_grant_copy_segment)"],
  ["seg source", "offsetof(struct xd_copy_seg, source)", "offsetof(struct ioctl_gntdev_grant_copy_segment, source)"],
  ["seg dest", "offsetof(struct xd_copy_seg, dest)", "offsetof(struct ioctl_gntdev_grant_copy_segment, dest)"],
  ["seg len", "offsetof(struct xd_copy_seg, len)", "offsetof(struct ioctl_gntdev_grant_copy_segment, len)"],
  ["seg flags", "offsetof(struct xd_copy_seg, flags)", "offsetof(struct ioctl_gntdev_grant_copy_segment, flags)"],
  ["seg status", "offsetof(struct xd_copy_seg, status)", "offsetof(struct ioctl_gntdev_grant_copy_segment, status)"],
  ["seg foreign ref", "offsetof(struct xd_copy_seg, source.foreign.ref)", "offsetof(struct ioctl_gntdev_grant_copy_segment, source.foreign.ref)"],
  ["seg foreign offset", "offsetof(struct xd_copy_seg, source.foreign.offset)", "offsetof(struct ioctl_gntdev_grant_copy_segment, source.foreign.offset)"],
  ["seg foreign domid", "offsetof(struct xd_copy_seg, source.foreign.domid)", "offsetof(struct ioctl_gntdev_grant_copy_segment, source.foreign.domid)"],
  ["sizeof grant_copy", "sizeof(struct xd_grant_copy)", "sizeof(struct ioctl_gntdev_grant_copy)"],
  ["grant_copy count", "offsetof(struct xd_grant_copy, count)", "offsetof(struct ioctl_gntdev_grant_copy, count)"],
  ["grant_copy segments", "offsetof(struct xd_grant_copy, segments)", "offsetof(struct ioctl_gntdev_grant_copy, segments)"],
  ["GNTCOPY_source_gref", "XD_GNTCOPY_source_gref", "GNTCOPY_source_gref"],
  ["GNTCOPY_dest_gref", "XD_GNTCOPY_dest_gref", "GNTCOPY_dest_gref"],
  ["GNTST_bad_copy_arg", "XD_GNTST_bad_copy_arg", "GNTST_bad_copy_arg"],
  ["IOCTL_GNTDEV_MAP_GRANT_REF", "XD_IOCTL_GNTDEV_MAP_GRANT_REF", "IOCTL_GNTDEV_MAP_GRANT_REF"],
  ["IOCTL_GNTDEV_UNMAP_GRANT_REF", "XD_IOCTL_GNTDEV_UNMAP_GRANT_REF", "IOCTL_GNTDEV_UNMAP_GRANT_REF"],
  ["IOCTL_GNTDEV_GRANT_COPY", "XD_IOCTL_GNTDEV_GRANT_COPY", "IOCTL_GNTDEV_GRANT_COPY"],
  ["sizeof bind_interdomain", "sizeof(struct xd_bind_interdomain)", "sizeof(struct ioctl_evtchn_bind_interdomain)"],
  ["bind remote_domain", "offsetof(struct xd_bind_interdomain, remote_domain)", "offsetof(struct ioctl_evtchn_bind_interdomain, remote_domain)"],
  ["bind remote_port", "offsetof(struct xd_bind_interdomain, remote_port)", "offsetof(struct ioctl_evtchn_bind_interdomain, remote_port)"],
  ["IOCTL_EVTCHN_BIND_INTERDOMAIN", "XD_IOCTL_EVTCHN_BIND_INTERDOMAIN", "IOCTL_EVTCHN_BIND_INTERDOMAIN"],
  ["IOCTL_EVTCHN_BIND_UNBOUND_PORT", "XD_IOCTL_EVTCHN_BIND_UNBOUND_PORT", "IOCTL_EVTCHN_BIND_UNBOUND_PORT"],
  ["IOCTL_EVTCHN_UNBIND", "XD_IOCTL_EVTCHN_UNBIND", "IOCTL_EVTCHN_UNBIND"],
  ["IOCTL_EVTCHN_NOTIFY", "XD_IOCTL_EVTCHN_NOTIFY", "IOCTL_EVTCHN_NOTIFY"],
  ["IOCTL_EVTCHN_RESET", "XD_IOCTL_EVTCHN_RESET", "IOCTL_EVTCHN_RESET"],
  ["sizeof gntalloc alloc", "sizeof(struct xd_gntalloc_alloc)", "sizeof(struct ioctl_gntalloc_alloc_gref)"],
  ["gntalloc domid", "offsetof(struct xd_gntalloc_alloc, domid)", "offsetof(struct ioctl_gntalloc_alloc_gref, domid)"],
  ["gntalloc flags", "offsetof(struct xd_gntalloc_alloc, flags)", "offsetof(struct ioctl_gntalloc_alloc_gref, flags)"],
  ["gntalloc count", "offsetof(struct xd_gntalloc_alloc, count)", "offsetof(struct ioctl_gntalloc_alloc_gref, count)"],
  ["gntalloc index", "offsetof(struct xd_gntalloc_alloc, index)", "offsetof(struct ioctl_gntalloc_alloc_gref, index)"],
  ["gntalloc gref_ids", "offsetof(struct xd_gntalloc_alloc, gref_ids)", "offsetof(struct ioctl_gntalloc_alloc_gref, gref_ids)"],
  ["sizeof gntalloc dealloc", "sizeof(struct xd_gntalloc_dealloc)", "sizeof(struct ioctl_gntalloc_dealloc_gref)"],
  ["gntalloc dealloc index", "offsetof(struct xd_gntalloc_dealloc, index)", "offsetof(struct ioctl_gntalloc_dealloc_gref, index)"],
  ["gntalloc dealloc count", "offsetof(struct xd_gntalloc_dealloc, count)", "offsetof(struct ioctl_gntalloc_dealloc_gref, count)"],
  ["IOCTL_GNTALLOC_ALLOC_GREF", "XD_IOCTL_GNTALLOC_ALLOC_GREF", "IOCTL_GNTALLOC_ALLOC_GREF"],
  ["IOCTL_GNTALLOC_DEALLOC_GREF", "XD_IOCTL_GNTALLOC_DEALLOC_GREF", "IOCTL_GNTALLOC_DEALLOC_GREF"],
  ["GNTALLOC_FLAG_WRITABLE", "1", "GNTALLOC_FLAG_WRITABLE"],
];

function program(): string {
  const lines = pairs.map(([, ours, theirs], i) => `  printf("%d %lld %lld\\n", ${i}, (long long)(${ours}), (long long)(${theirs}));`);
  return `#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <xen/xen.h>
#include <xen/grant_table.h>
#include <xen/sys/gntdev.h>
#include <xen/sys/evtchn.h>
#include <xen/sys/gntalloc.h>
#include "${join(nativeDir, "xendev.c")}"
int main(void) {
${lines.join("\n")}
  return 0;
}
`;
}

let results: Map<number, [number, number]>;

beforeAll(() => {
  ensureDebPackages(["libxen-dev", "gcc"]);
  const dir = mkdtempSync(join(tmpdir(), "qnicd-xendev-abi-"));
  try {
    writeFileSync(join(dir, "abi.c"), program());
    const cc = Bun.spawnSync(["gcc", "-Wall", "-o", join(dir, "abi"), join(dir, "abi.c")], { stderr: "pipe" });
    if (cc.exitCode !== 0) throw new Error(`compiling native/xendev.c with libxen-dev's headers failed:\n${cc.stderr.toString()}`);
    const run = Bun.spawnSync([join(dir, "abi")], { stdout: "pipe" });
    results = new Map(
      run.stdout.toString().trim().split("\n").map((l) => {
        const [i, a, b] = l.split(" ").map(Number);
        return [i, [a, b]];
      }),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

describe("native/xendev.c layouts match libxen-dev's linux uapi headers", () => {
  pairs.forEach(([label], i) => {
    test(label, () => {
      const [ours, theirs] = results.get(i) ?? [NaN, NaN];
      expect({ label, value: ours }).toEqual({ label, value: theirs });
    });
  });

  test("xendev.c and src/xen/grant-table.ts agree on the ioctl numbers and the segment size", () => {
    const byLabel = (l: string) => results.get(pairs.findIndex(([x]) => x === l))![0];
    expect(byLabel("IOCTL_GNTDEV_MAP_GRANT_REF")).toBe(IOCTL_GNTDEV_MAP_GRANT_REF);
    expect(byLabel("IOCTL_GNTDEV_UNMAP_GRANT_REF")).toBe(IOCTL_GNTDEV_UNMAP_GRANT_REF);
    expect(byLabel("IOCTL_GNTDEV_GRANT_COPY")).toBe(IOCTL_GNTDEV_GRANT_COPY);
    expect(xendev().xd_sizeof_copy_seg()).toBe(GNTDEV_COPY_SEGMENT_SIZE);
  });
});

describe("xen platform off Xen", () => {
  test("openPlatform({kind: 'xen'}) on a machine without Xen fails with one clear line", () => {
    if (process.env.QNICD_ON_XEN) return; // inside the testbed's dom0 this would open for real
    let err: unknown;
    try {
      openPlatform({ kind: "xen", domid: 0 }).close();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PlatformError);
    expect((err as PlatformError).code).toBe("ENODEV");
    expect((err as Error).message).toMatch(/does not run under Xen: use the simulated host/);
  });
});
