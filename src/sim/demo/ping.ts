// Ping as a program inside a guest would: resolve the target's MAC with ARP, then ICMP echo
// requests of a given payload size, one at a time, each answered within a timeout or counted
// lost. Replies are matched on addresses, ident and sequence, and their payload must come back
// byte for byte: a reply that arrives mangled is counted as "corrupt", not as an answer.
// Every frame the guest receives is untrusted: each field is bounds-checked before it is read.
import { spawnSync } from "node:child_process";
import { buildArp, buildIcmpEcho, formatMac, parseIPv4 } from "../netfront/frames.ts";
import type { GuestShell } from "./guest-process.ts";

export interface PingResult {
  size: number;
  sent: number;
  received: number;
  corrupt: number;
  rttsMs: number[];
}

export interface Endpoint {
  mac: Uint8Array;
  ip: Uint8Array;
}

const eq = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);
const ETH_ARP = 0x0806, ETH_IPV4 = 0x0800;

function ethertype(f: Uint8Array): number {
  return f.length >= 14 ? (f[12]! << 8) | f[13]! : -1;
}

/** Waits for the first frame `match` accepts, or undefined after `timeoutMs`. */
function nextFrame<T>(shell: GuestShell, match: (f: Uint8Array) => T | undefined, timeoutMs: number): Promise<T | undefined> {
  return new Promise((res) => {
    const t = setTimeout(() => {
      off();
      res(undefined);
    }, timeoutMs);
    const off = shell.onFrame((f) => {
      const v = match(f);
      if (v === undefined) return;
      clearTimeout(t);
      off();
      res(v);
    });
  });
}

/** ARP "who has target": the answering MAC, or undefined after `tries` unanswered requests. */
export async function arpResolve(shell: GuestShell, me: Endpoint, target: Uint8Array, tries = 3, timeoutMs = 1000): Promise<Uint8Array | undefined> {
  for (let i = 0; i < tries; i++) {
    const reply = nextFrame(
      shell,
      (f) => (ethertype(f) === ETH_ARP && f.length >= 42 && f[20] === 0 && f[21] === 2 && eq(f.subarray(28, 32), target) ? f.slice(22, 28) : undefined),
      timeoutMs,
    );
    shell.send(buildArp(1, me.mac, me.ip, new Uint8Array(6), target));
    const mac = await reply;
    if (mac) return mac;
  }
  return undefined;
}

/** The ICMP echo reply's payload if `f` answers (ident, seq) from `from` to `me`. */
function echoReplyPayload(f: Uint8Array, me: Endpoint, from: Uint8Array, ident: number, seq: number): Uint8Array | undefined {
  if (ethertype(f) !== ETH_IPV4 || f.length < 34 + 8 || !eq(f.subarray(0, 6), me.mac)) return undefined;
  const ihl = (f[14]! & 0x0f) * 4;
  if (f[14]! >> 4 !== 4 || ihl < 20 || f[23] !== 1) return undefined;
  if (!eq(f.subarray(26, 30), from) || !eq(f.subarray(30, 34), me.ip)) return undefined;
  const totalLen = (f[16]! << 8) | f[17]!;
  const end = Math.min(f.length, 14 + totalLen);
  if (14 + ihl + 8 > end) return undefined;
  const icmp = f.subarray(14 + ihl, end);
  if (icmp[0] !== 0 || ((icmp[4]! << 8) | icmp[5]!) !== ident || ((icmp[6]! << 8) | icmp[7]!) !== seq) return undefined;
  return icmp.subarray(8);
}

/** `count` echo requests with `size` payload bytes (ping -s), sequential, `timeoutMs` each. */
export async function guestPing(shell: GuestShell, me: Endpoint, target: Endpoint, size: number, count: number, timeoutMs = 1000): Promise<PingResult> {
  const r: PingResult = { size, sent: 0, received: 0, corrupt: 0, rttsMs: [] };
  const ident = (process.pid ^ size) & 0xffff;
  for (let seq = 1; seq <= count; seq++) {
    const payload = Uint8Array.from({ length: size }, (_, i) => (i * 7 + seq + size) & 0xff);
    const reply = nextFrame(shell, (f) => echoReplyPayload(f, me, target.ip, ident, seq), timeoutMs);
    const t0 = performance.now();
    shell.send(buildIcmpEcho(8, me.mac, target.mac, me.ip, target.ip, ident, seq, payload));
    r.sent++;
    const got = await reply;
    if (!got) continue;
    if (!eq(got, payload)) {
      r.corrupt++;
      continue;
    }
    r.received++;
    r.rttsMs.push(performance.now() - t0);
  }
  return r;
}

/** The host's own `ping` (iputils), when installed: null when there is no ping command. */
export function hostPing(ifname: string, ip: string, size: number, count: number): PingResult | null {
  const p = spawnSync("ping", ["-n", "-c", String(count), "-s", String(size), "-i", "0.2", "-W", "1", "-I", ifname, ip], { encoding: "utf8" });
  if (p.error && (p.error as NodeJS.ErrnoException).code === "ENOENT") return null;
  const out = p.stdout ?? "";
  const m = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(out);
  // One "time=0.123 ms" per reply line; ping checks the payload itself and says "wrong data".
  const rttsMs = [...out.matchAll(/ time=([\d.]+) ms/g)].map((x) => Number(x[1]));
  const corrupt = (out.match(/wrong data/g) ?? []).length;
  return { size, sent: m ? Number(m[1]) : count, received: m ? Number(m[2]) : 0, corrupt, rttsMs };
}

/** "  56 bytes: 3/3 replies, 0% loss, rtt min/avg/max 0.412/0.530/0.701 ms" */
export function formatPing(r: PingResult): string {
  const loss = r.sent ? Math.round((100 * (r.sent - r.received)) / r.sent) : 100;
  const rtt = r.rttsMs.length
    ? `, rtt min/avg/max ${Math.min(...r.rttsMs).toFixed(3)}/${(r.rttsMs.reduce((a, b) => a + b, 0) / r.rttsMs.length).toFixed(3)}/${Math.max(...r.rttsMs).toFixed(3)} ms`
    : "";
  return `${String(r.size).padStart(5)} bytes: ${r.received}/${r.sent} replies, ${loss}% loss${r.corrupt ? `, ${r.corrupt} corrupt` : ""}${rtt}`;
}

export function endpoint(mac: string | Uint8Array, ip: string): Endpoint {
  const m = typeof mac === "string" ? Uint8Array.from(mac.split(":").map((h) => Number.parseInt(h, 16))) : mac;
  const a = parseIPv4(ip);
  if (m.length !== 6 || m.some((x) => !Number.isInteger(x)) || !a) throw new Error(`bad endpoint ${formatMac(m)} ${ip}`);
  return { mac: m, ip: a };
}
