// Guest tx of 64 KiB TCP GSO packets on the simulated host into a real vnet TAP (root), two ways
// alternated in one run (issue 12 item 3):
//   copy:     every slot grant-copied into the packet's 64 KiB frame slot, one write per frame
//             (workers/tx.ts's default);
//   mapfrags: the first 128 bytes copied (the headers the virtio_net_hdr is built from), the rest of
//             each fragment mapped (one map per pass, unmapped before the responses), one writev
//             per frame over the pieces (TxOptions.mapFrags).
// The guest is the gso scenario's C producer (bench/datapath-guest.c txgso: netfront's layout, 17
// slots per packet). Prints packets/s of each, medians and mapfrags / copy.
//   node scripts/bun.mjs run bench/tx-map.ts [ms per window, default 400] [pairs, default 5]
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TapProvisioner } from "../src/net/peer-provisioner-tap.ts";
import { TapPeer } from "../src/net/tap.ts";
import { counters, DatapathRig } from "./lib/datapath-rig.ts";
import { alternate, median } from "./lib/stats.ts";
import { TxPath } from "../workers/tx.ts";
import { parseMac } from "../src/net/frames.ts";

const FRAME = 65535;
const MSS = 1448;
const BUDGET = 64;
const ms = Number(process.argv[2] ?? 400);
const pairs = Number(process.argv[3] ?? 5);

/** Ethernet + IPv4 + TCP of `size` bytes to a MAC nobody has (the kernel drops it after taking it). */
function tcpGsoFrame(size: number): Uint8Array {
  const f = new Uint8Array(size);
  const dv = new DataView(f.buffer);
  f.set(parseMac("02:00:00:00:00:fd")!, 0);
  f.set(parseMac("02:00:00:00:00:fe")!, 6);
  dv.setUint16(12, 0x0800);
  f[14] = 0x45;
  dv.setUint16(16, size - 14);
  f[22] = 64;
  f[23] = 6;
  f.set([10, 0, 0, 2, 10, 0, 0, 1], 26);
  dv.setUint16(34, 40000);
  dv.setUint16(36, 5201);
  f[46] = 0x50;
  f[47] = 0x18;
  for (let i = 54; i < size; i++) f[i] = (i * 7) & 0xff;
  return f;
}

const work = mkdtempSync(join(tmpdir(), "qnicd-txmap-"));
const rig = new DatapathRig(work);
const prov = new TapProvisioner({ bridge: null, persistent: false });
const name = `qntm${process.pid % 100000}`;
const handle = prov.create(name);
try {
  writeFileSync(`/proc/sys/net/ipv6/conf/${name}/disable_ipv6`, "1");
  spawnSync("ip", ["link", "set", "dev", name, "up"]);
  const tap = new TapPeer(name, handle.fd);
  const ring = rig.ring();
  const producer = await rig.producer(ring, ["txgso", String(rig.dataPage(tcpGsoFrame(FRAME).subarray(0, 4096))), String(MSS)]);
  const s = rig.gsoScratch;
  const window = (mapFrags: boolean) => (): number => {
    const tx = new TxPath(ring.map.buffer, rig.domid, { sg: true, gso: true }, null, { mapFrags });
    const c = counters();
    const end = performance.now() + ms;
    let total = 0;
    for (let i = 0; ; i++) {
      if ((i & 63) === 0 && performance.now() >= end) break;
      const p = tx.service(BUDGET, s, rig.gnt, tap, c);
      if (p.fault) throw new Error(p.fault);
      total += p.packets;
      if (p.slots === 0) rig.ref.ref_yield();
    }
    if (c.tx_errors > 0 || c.tx_drops > 0) throw new Error(`tx ${mapFrags ? "mapfrags" : "copy"}: ${c.tx_errors} errors, ${c.tx_drops} drops (${tap.lastError})`);
    return total / (ms / 1000);
  };
  try {
    window(false)();
    window(true)();
    const p = alternate(pairs, window(false), window(true));
    const [a, b] = [median(p.a), median(p.b)];
    console.log(`sim guest tx, 64 KiB GSO into a vnet TAP (${tap.writesUseUring ? "io_uring writes" : "plain writes"}), ${pairs} pairs x ${ms} ms:`);
    console.log(`  copy     ${p.a.map((x) => x.toFixed(0)).join(" ")} pps, median ${a.toFixed(0)} (${((a * FRAME * 8) / 1e9).toFixed(2)} Gbit/s)`);
    console.log(`  mapfrags ${p.b.map((x) => x.toFixed(0)).join(" ")} pps, median ${b.toFixed(0)} (${((b * FRAME * 8) / 1e9).toFixed(2)} Gbit/s)`);
    console.log(`  mapfrags / copy (median of per-pair ratios): ${median(p.b.map((x, i) => x / p.a[i]!)).toFixed(2)}`);
  } finally {
    await producer.stop();
    tap.close();
  }
} finally {
  prov.destroy(handle);
  prov.close();
  rig.close();
  rmSync(work, { recursive: true, force: true });
}
