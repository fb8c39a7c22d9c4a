// Runs inside the testbed's dom0 under Bun (dom0-run.sh step "platform"): the real platform
// (openPlatform({kind: "xen"})) against real Xen, with dom0 as both sides: /dev/xen/gntalloc grants
// dom0 pages to dom0, and an unbound port offered to dom0 is bound interdomain by dom0 itself.
// One line per check ("ok <name>: ..." / "FAIL <name>: ..."); exits 1 if any check failed.
import { poll } from "./poll.ts";
import { GrantCopyBatch, openPlatform, PlatformError, type EventChannelDevice } from "../../../src/platform/index.ts";
import { XenGrantAlloc } from "../../../src/platform/xen.ts";
import {
  GNTST_bad_copy_arg,
  GNTST_bad_gntref,
  GNTST_general_error,
  GNTST_okay,
  gntstName,
} from "../../../src/xen/grant-table.ts";

let failed = 0;
function check(name: string, ok: boolean, detail: string): void {
  console.log(`${ok ? "ok" : "FAIL"} ${name}: ${detail}`);
  if (!ok) failed++;
}
function attempt(name: string, fn: () => void): void {
  try {
    fn();
  } catch (e) {
    check(name, false, `threw ${(e as Error).stack ?? e}`);
  }
}

const platform = openPlatform({ kind: "xen", domid: 0 });
check("open", platform.kind === "xen", `kind ${platform.kind}, xenstore at ${platform.xenstorePath}`);
const gdev = platform.openGrantDevice();
const alloc = new XenGrantAlloc();
const granted = alloc.alloc(0, 2);
const gview = new Uint8Array(granted.buffer);
for (let i = 0; i < gview.length; i++) gview[i] = (i * 7 + 3) & 0xff;
check("gntalloc", granted.refs.length === 2, `dom0 granted refs ${granted.refs.join(",")} to dom0`);

// --- map ---------------------------------------------------------------------------------------
attempt("map", () => {
  const m = gdev.map(0, granted.refs, true);
  const mv = new Uint8Array(m.buffer);
  let same = mv.length === 8192;
  for (let i = 0; same && i < mv.length; i++) same = mv[i] === ((i * 7 + 3) & 0xff);
  check("map reads", same, `mapped ${m.pages} pages at 0x${m.addr.toString(16)}; contents ${same ? "equal" : "differ"} to the granter's`);
  mv[5000] = 0xab;
  check("map writes", gview[5000] === 0xab, `a write through the mapping is ${gview[5000] === 0xab ? "" : "NOT "}seen by the granter`);
  m.unmap();
  m.unmap();
  check("unmap", true, "munmap + UNMAP_GRANT_REF, twice is harmless");
});

attempt("map of a bad ref", () => {
  let err: unknown;
  try {
    gdev.map(0, [0xfffff], false).unmap();
  } catch (e) {
    err = e;
  }
  const pe = err as PlatformError;
  check(
    "map of a bad ref",
    pe instanceof PlatformError && pe.status === GNTST_bad_gntref,
    pe instanceof PlatformError ? `PlatformError ${pe.code} (${pe.status}): ${pe.message}` : `no PlatformError: ${err}`,
  );
});

attempt("map of a read-only grant", () => {
  const ro = alloc.alloc(0, 1, true);
  try {
    const m = gdev.map(0, ro.refs, false);
    check("map read-only of a read-only grant", m.pages === 1, "maps");
    m.unmap();
    let err: unknown;
    try {
      gdev.map(0, ro.refs, true).unmap();
    } catch (e) {
      err = e;
    }
    const pe = err as PlatformError;
    check(
      "map writable of a read-only grant",
      pe instanceof PlatformError && pe.status === GNTST_general_error,
      pe instanceof PlatformError ? `PlatformError ${pe.code} (${pe.status}): ${pe.message}` : `no PlatformError: ${err}`,
    );
    // A copy into a read-only grant fails that segment alone with general_error.
    const b = new GrantCopyBatch(2);
    const src = new GrantCopyBatch(8);
    b.setLocalToGrant(0, src.addr, 0, ro.refs[0], 0, 64);
    b.setGrantToLocal(1, 0, ro.refs[0], 0, src.addr + 64, 64);
    const n = gdev.copy(b, 2);
    check("copy into a read-only grant", n === 1 && b.status(0) === GNTST_general_error && b.status(1) === GNTST_okay,
      `returned ${n} failed; statuses ${gntstName(b.status(0))}, ${gntstName(b.status(1))}`);
    b.free();
    src.free();
  } finally {
    ro.free();
  }
});

// --- copy --------------------------------------------------------------------------------------
attempt("copy", () => {
  const batch = new GrantCopyBatch(8);
  const local = new GrantCopyBatch(512); // 12 KiB of native memory used as the local buffer
  const lv = new Uint8Array(local.buffer);
  for (let i = 0; i < 4096; i++) lv[i] = (i * 13 + 1) & 0xff;
  const [r0, r1] = granted.refs;
  batch.setGrantToLocal(0, 0, r0, 100, local.addr + 8192, 1000); // granted page 0 [100..1100) -> local[8192..)
  batch.setLocalToGrant(1, local.addr, 0, r1, 0, 4096); // local[0..4096) -> granted page 1
  batch.setGrantToLocal(2, 0, 0xfffff, 0, local.addr + 9300, 10); // bad gref
  batch.setGrantToLocal(3, 0, r0, 4000, local.addr + 9400, 200); // crosses the page
  batch.setGrantToLocal(4, 0, r0, 0, local.addr + 9700, 10);
  new DataView(batch.buffer).setUint16(4 * 24 + 18, 0, true); // no foreign side: local -> local
  batch.setGrantToGrant(5, 0, r0, 0, 0, r1, 4000, 96); // a valid run after the bad ones
  const failedSegs = gdev.copy(batch, 6);
  const st = [0, 1, 2, 3, 4, 5].map((i) => batch.status(i));
  check("copy statuses", failedSegs === 3 && st.join() === [GNTST_okay, GNTST_okay, GNTST_bad_gntref, GNTST_bad_copy_arg, GNTST_bad_copy_arg, GNTST_okay].join(),
    `returned ${failedSegs} failed; statuses ${st.map(gntstName).join(", ")}`);
  let in0 = true;
  for (let i = 0; i < 1000; i++) in0 &&= lv[8192 + i] === gview[100 + i];
  check("copy grant->local", in0, `1000 bytes from granted page 0 ${in0 ? "arrived" : "did NOT arrive"} in local memory`);
  let in1 = true;
  for (let i = 0; i < 4000; i++) in1 &&= gview[4096 + i] === ((i * 13 + 1) & 0xff);
  check("copy local->grant", in1, `4000 bytes of local memory ${in1 ? "arrived" : "did NOT arrive"} in granted page 1`);
  let g2g = true;
  for (let i = 0; i < 96; i++) g2g &&= gview[4096 + 4000 + i] === gview[i];
  check("copy grant->grant", g2g, `96 bytes between granted pages ${g2g ? "arrived" : "did NOT arrive"}`);
  check("copy left bad segments alone", lv[9300] === 0 && lv[9400] === 0 && lv[9700] === 0, "failed segments wrote nothing");
  batch.free();
  local.free();
});

// --- event channels ----------------------------------------------------------------------------
async function waitPort(dev: EventChannelDevice, port: number, ms: number): Promise<number[]> {
  const out = new Uint32Array(16);
  const deadline = Date.now() + ms;
  for (;;) {
    const n = dev.readPending(out);
    if (n > 0) return [...out.subarray(0, n)];
    if (Date.now() > deadline) return [];
    await poll(dev.fd, Math.min(100, deadline - Date.now()));
  }
}

async function evtchn(): Promise<void> {
  const a = platform.openEventChannelDevice();
  const b = platform.openEventChannelDevice();
  const pa = a.bindUnboundPort(0);
  const pb = b.bindInterdomain(0, pa);
  check("evtchn bind", pa > 0 && pb > 0 && pa !== pb, `unbound port ${pa} offered to dom0, bound interdomain from dom0 as port ${pb}`);
  b.notify(pb);
  const got = await waitPort(a, pa, 2000);
  check("evtchn notify b->a", got.length === 1 && got[0] === pa, `a read [${got}]`);
  b.notify(pb);
  const masked = await waitPort(a, pa, 300);
  check("evtchn masked until unmask", masked.length === 0, `while masked a read [${masked}]`);
  a.unmask(Uint32Array.of(pa), 1);
  const again = await waitPort(a, pa, 2000);
  check("evtchn pending fires on unmask", again.length === 1 && again[0] === pa, `after unmask a read [${again}]`);
  a.unmask(Uint32Array.of(pa), 1);
  a.notify(pa);
  const back = await waitPort(b, pb, 2000);
  check("evtchn notify a->b", back.length === 1 && back[0] === pb, `b read [${back}]`);
  b.unmask(Uint32Array.of(pb), 1);
  b.unbind(pb);
  // Xen returns a's end to unbound: dom0 can bind it again.
  const pb2 = b.bindInterdomain(0, pa);
  check("evtchn rebind after unbind", pb2 > 0, `port ${pa} bound again as ${pb2}`);
  let err: unknown;
  try {
    b.bindInterdomain(0, 4000);
  } catch (e) {
    err = e;
  }
  check("evtchn bind to a port not offered", err instanceof PlatformError, `${err instanceof PlatformError ? `${err.code}: ${err.message}` : err}`);
  a.close();
  b.close();
}

try {
  await evtchn();
} catch (e) {
  check("evtchn", false, `threw ${(e as Error).stack ?? e}`);
}

async function inWorker(): Promise<void> {
  const a = platform.openEventChannelDevice();
  const pa = a.bindUnboundPort(0);
  const w = new Worker(new URL("./platform-worker.ts", import.meta.url).href);
  const reply = await new Promise<{ bytes?: number[]; local?: number; error?: string }>((res) => {
    w.onmessage = (e) => res(e.data);
    w.postMessage({ config: platform.config, gref: granted.refs[0], port: pa });
  });
  w.terminate();
  if (reply.error) {
    check("worker", false, reply.error);
  } else {
    const want = Array.from(gview.subarray(0, 8));
    check("worker maps", JSON.stringify(reply.bytes) === JSON.stringify(want), `a Worker's own platform mapped ref ${granted.refs[0]}: [${reply.bytes}] (granter has [${want}])`);
    const got = await waitPort(a, pa, 2000);
    check("worker notifies", got.length === 1 && got[0] === pa, `the Worker bound port ${pa} as ${reply.local} and notified: main read [${got}]`);
  }
  a.close();
}

try {
  await inWorker();
} catch (e) {
  check("worker", false, `threw ${(e as Error).stack ?? e}`);
}

// The TAP steering program on this kernel (the testbed's Debian dom0 kernel, not the CI host's):
// its eBPF verifier must accept it, and it must pick what netback's selection picks.
try {
  const { SteeredTap } = await import("../../net/steering-check.ts");
  const tap = new SteeredTap("qnsteer0");
  try {
    const r = tap.check({ flags: 0xf, size: 8, mapping: [3, 1, 2, 0, 1, 3, 2, 0] });
    check("tap steering", r.wrong.length === 0 && r.queuesUsed > 2, `${r.frames} frames over ${r.queuesUsed} of 4 queues, ${r.wrong.length} on another queue than the frontend's mapping names${r.wrong.length ? `: ${r.wrong.slice(0, 3).join("; ")}` : ""}`);
  } finally {
    tap.close();
  }
} catch (e) {
  check("tap steering", false, `threw ${(e as Error).stack ?? e}`);
}

granted.free();
alloc.close();
platform.close();
console.log(failed === 0 ? "platform-check: all passed" : `platform-check: ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
