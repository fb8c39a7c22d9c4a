// Peer throughput, all ratios from one run (BUN-FACTS: 20-30 % run-to-run noise on this VM).
//  1. TAP writes: TapPeer.send() through io_uring (JS loop, one FFI call and one io_uring_enter per
//     64-frame batch) vs bench/tap-writer.c (plain C io_uring loop, same batch) into the same TAP,
//     and TapPeer's plain write() fallback; 64 B and 1500 B frames. Needs root (/dev/net/tun).
//     TAP reads: TapPeer.receive() through io_uring vs its plain read() loop, draining 4096 frames
//     that bench/tap-injector.c (AF_PACKET sendmmsg) queued on the TAP beforehand.
//  2. Switch: frames/s from a port on one Bun Worker to a port on another.
//  3. Checksum fill: ns per frame for a batch of csum_blank frames (one native call per batch).
// Usage: bun bench/peers.ts [--seconds 1.5] [--rounds 3]. Writes bench/results/peers.json.
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fillChecksums } from "../src/net/checksum.ts";
import { createFrameBatch } from "../src/net/frame-batch.ts";
import { buildUdpFrame } from "../src/net/frames.ts";
import { TapProvisioner } from "../src/net/peer-provisioner-tap.ts";
import { SwitchFabric } from "../src/net/switch.ts";
import { TapPeer, type TapIoMode } from "../src/net/tap.ts";

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const SECONDS = arg("seconds", 1.5), ROUNDS = arg("rounds", 3), BATCH = 64;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (pps: number) => `${(pps / 1e6).toFixed(3)} Mpps`;

function tapOurs(peer: TapPeer, size: number): number {
  const b = createFrameBatch(BATCH, 2048);
  for (let i = 0; i < BATCH; i++) {
    b.bytes.set([2, 2, 2, 2, 2, 2, 4, 4, 4, 4, 4, 4, 0x08, 0x00], i * b.stride);
    b.lens[i] = size;
  }
  let ok = 0;
  const t0 = performance.now(), end = t0 + SECONDS * 1000;
  let t = t0;
  while (t < end) {
    for (let k = 0; k < 16; k++) {
      b.count = BATCH;
      ok += peer.send(b);
    }
    t = performance.now();
  }
  return ok / ((t - t0) / 1000);
}

function tapReference(writer: string, fd: number, size: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(writer, [String(size), String(BATCH), String(SECONDS)], { stdio: ["ignore", "pipe", "inherit", fd] });
    let out = "";
    child.stdout!.on("data", (d) => (out += d));
    child.on("exit", (code) => {
      if (code !== 0) return reject(new Error(`tap-writer exited ${code}`));
      const [ok, , secs] = out.trim().split(" ").map(Number);
      resolve(ok / secs);
    });
  });
}

/**
 * Frames/s receive() drains from a TAP whose queue the injector filled beforehand: the per-frame
 * cost of reading, without the injector competing for the 2 vCPUs while we measure.
 */
function tapReceive(injector: string, peer: TapPeer, ifname: string, size: number): number {
  const b = createFrameBatch(BATCH, 2048);
  const FILL = 4096;
  let got = 0, ms = 0;
  for (let k = 0; k < 8; k++) {
    while (peer.receive(b) > 0); // start empty
    execFileSync(injector, [ifname, String(size), String(FILL)]);
    const t0 = performance.now();
    for (let n = peer.receive(b); n > 0; n = peer.receive(b)) got += n;
    ms += performance.now() - t0;
  }
  return got / (ms / 1000);
}

async function benchTap(results: Record<string, unknown>) {
  if (process.getuid?.() !== 0) {
    console.log("TAP: skipped (needs root for /dev/net/tun)");
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), "qnicd-bench-"));
  const writer = join(dir, "tap-writer");
  execFileSync("gcc", ["-O2", "-o", writer, join(import.meta.dir, "tap-writer.c")]);
  const injector = join(dir, "tap-injector");
  execFileSync("gcc", ["-O2", "-o", injector, join(import.meta.dir, "tap-injector.c")]);
  // Raw frames: the C reference writer shares the fd and writes no virtio_net_hdr.
  const prov = new TapProvisioner({ bridge: null, vnetHdr: false });
  const handle = prov.create(`qnbench${process.pid % 10000}`);
  execFileSync("ip", ["link", "set", "dev", handle.name, "txqueuelen", "8192"]); // room for the injector's 4096 frames
  const peers: Record<TapIoMode, TapPeer> = {
    uring: new TapPeer(handle.name, handle.fd, { io: "uring" }),
    plain: new TapPeer(handle.name, handle.fd, { io: "plain" }),
    auto: null as never,
  };
  try {
    for (const size of [64, 1500]) {
      const r: Record<string, number[]> = { ours: [], reference: [], plain: [] };
      for (let round = 0; round < ROUNDS; round++) {
        r.ours.push(tapOurs(peers.uring, size));
        r.reference.push(await tapReference(writer, handle.fd, size));
        r.plain.push(tapOurs(peers.plain, size));
      }
      const ours = median(r.ours), ref = median(r.reference), plain = median(r.plain);
      console.log(`TAP ${String(size).padStart(4)} B: TapPeer io_uring ${fmt(ours)} | C io_uring reference ${fmt(ref)} | TapPeer plain write() ${fmt(plain)} | ours/reference ${(ours / ref).toFixed(2)} | io_uring/plain ${(ours / plain).toFixed(2)}`);
      results[`tap_${size}`] = { ours, reference: ref, plain, ratio: ours / ref, samples: r };
    }
    for (const size of [64, 1500]) {
      const r: Record<string, number[]> = { uring: [], plain: [] };
      for (let round = 0; round < ROUNDS; round++) {
        r.uring.push(tapReceive(injector, peers.uring, handle.name, size));
        r.plain.push(tapReceive(injector, peers.plain, handle.name, size));
      }
      const uring = median(r.uring), plain = median(r.plain);
      console.log(`TAP rx ${String(size).padStart(4)} B (draining a full queue): TapPeer io_uring ${fmt(uring)} | TapPeer plain read() ${fmt(plain)} | io_uring/plain ${(uring / plain).toFixed(2)}`);
      results[`tap_rx_${size}`] = { uring, plain, ratio: uring / plain, samples: r };
    }
    const s = peers.uring.syscalls;
    console.log(`TAP: io_uring syscalls so far ${s}, drops ${peers.uring.drops} (${peers.uring.lastError ?? "no errors"})`);
  } finally {
    peers.uring.close();
    peers.plain.close();
    prov.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function benchSwitch(results: Record<string, unknown>) {
  for (const size of [64, 1500]) {
    const samples: { rx: number; offered: number; drops: number }[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const fabric = new SwitchFabric({ ports: 4, ringBytes: 1 << 21 });
      const stop = new SharedArrayBuffer(4);
      const url = new URL("./peers-switch-worker.ts", import.meta.url).href;
      const a = new Worker(url), b = new Worker(url);
      const next = (w: Worker) => new Promise<any>((r) => (w.onmessage = (e) => r(e.data)));
      let pb = next(b);
      b.postMessage({ role: "recv", fabric: fabric.address, name: "b", myMac: 2, toMac: 1, size, seconds: SECONDS, stop });
      await pb;
      pb = next(b);
      let pa = next(a);
      a.postMessage({ role: "send", fabric: fabric.address, name: "a", myMac: 1, toMac: 2, size, seconds: SECONDS, stop });
      await pa;
      pa = next(a);
      const [sa, sb] = await Promise.all([pa, pb]);
      samples.push({ rx: sb.got / sa.seconds, offered: sa.offered / sa.seconds, drops: sb.drops });
      a.terminate();
      b.terminate();
      fabric.destroy();
    }
    const rx = median(samples.map((s) => s.rx)), offered = median(samples.map((s) => s.offered));
    console.log(`switch ${String(size).padStart(4)} B, worker A -> worker B: delivered ${fmt(rx)} (offered ${fmt(offered)}, ring-full drops ${samples.map((s) => s.drops).join("/")})`);
    results[`switch_${size}`] = { delivered: rx, offered, samples };
  }
}

function benchChecksum(results: Record<string, unknown>) {
  for (const size of [64, 1500]) {
    const b = createFrameBatch(BATCH, 2048);
    const f = buildUdpFrame({ srcMac: new Uint8Array(6), dstMac: new Uint8Array(6), srcIp: [10, 0, 0, 1], dstIp: [10, 0, 0, 2], srcPort: 1, dstPort: 2, size });
    for (let i = 0; i < BATCH; i++) {
      b.bytes.set(f, i * b.stride);
      b.lens[i] = size;
    }
    b.count = BATCH;
    const status = new Uint8Array(BATCH);
    let frames = 0;
    const t0 = performance.now(), end = t0 + SECONDS * 1000;
    let t = t0;
    while (t < end) {
      for (let k = 0; k < 256; k++) {
        status.fill(1);
        frames += fillChecksums(b, status);
      }
      t = performance.now();
    }
    const ns = ((t - t0) * 1e6) / frames;
    console.log(`checksum fill ${String(size).padStart(4)} B (UDP/IPv4, batches of ${BATCH}): ${ns.toFixed(1)} ns/frame`);
    results[`csum_${size}`] = { nsPerFrame: ns };
  }
}

const results: Record<string, unknown> = { when: new Date().toISOString(), seconds: SECONDS, rounds: ROUNDS, batch: BATCH };
console.log(`bench/peers: ${ROUNDS} rounds of ${SECONDS}s, batches of ${BATCH}, medians`);
await benchTap(results);
await benchSwitch(results);
benchChecksum(results);
mkdirSync(join(import.meta.dir, "results"), { recursive: true });
writeFileSync(join(import.meta.dir, "results", "peers.json"), JSON.stringify(results, null, 2));
process.exit(0);
