// Pings between two sim netfronts (each answering ICMP echo on its --ip), through whatever backend
// connects them: the echo reply must come back to the sender with the payload it sent.
import { buildIcmpEcho, parseIPv4, parseMac, type Netfront } from "../../src/sim/netfront/index.ts";

export interface EchoGuest {
  nf: Netfront;
  mac: string;
  ip: string;
}

/** Sends `count` echo requests from `a` to `b`, one at a time; returns how many came back intact. */
export async function echoAcross(a: EchoGuest, b: EchoGuest, count: number, size = 200, timeoutMs = 2000): Promise<number> {
  const [aMac, bMac, aIp, bIp] = [parseMac(a.mac)!, parseMac(b.mac)!, parseIPv4(a.ip)!, parseIPv4(b.ip)!];
  const ident = 0x5a5a;
  let ok = 0;
  for (let seq = 1; seq <= count; seq++) {
    const payload = Uint8Array.from({ length: size }, (_, i) => (i * 13 + seq) & 0xff);
    // The reply b's responder builds from our request (type 0, addresses swapped): compare whole frames.
    const expected = buildIcmpEcho(0, bMac, aMac, bIp, aIp, ident, seq, payload);
    const got = new Promise<boolean>((resolve) => {
      const t = setTimeout(() => {
        off();
        resolve(false);
      }, timeoutMs);
      const off = a.nf.onReceive((f) => {
        if (f.length !== expected.length || !f.every((x, i) => x === expected[i])) return;
        clearTimeout(t);
        off();
        resolve(true);
      });
    });
    if (!a.nf.send(buildIcmpEcho(8, aMac, bMac, aIp, bIp, ident, seq, payload))) continue;
    if (await got) ok++;
  }
  return ok;
}
