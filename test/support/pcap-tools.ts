// Reading captures with the tools operators use: tcpdump -r and tshark -r (Debian packages,
// installed when missing), plus a walk over pcapng blocks for what neither prints (isb_ifdrop).
import { spawnSync } from "node:child_process";
import { ensureDebPackages } from "./apt.ts";

/** tcpdump -r FILE -n -e: one line per frame; throws with tcpdump's stderr when it cannot read the file. */
export function tcpdumpLines(file: string, filter: string[] = []): string[] {
  ensureDebPackages(["tcpdump"]);
  const r = spawnSync("tcpdump", ["-r", file, "-n", "-e", "-xx", ...filter], { encoding: "utf8", timeout: 60_000 });
  if (r.status !== 0) throw new Error(`tcpdump -r ${file} failed (${r.status}): ${r.stderr}`);
  return r.stdout.split("\n").filter((l) => /^\d\d:\d\d:\d\d\.\d+ /.test(l));
}

/** tcpdump -r FILE -n -xx: every frame's bytes as tcpdump decoded them (captured length only). */
export function tcpdumpFrames(file: string): Uint8Array[] {
  ensureDebPackages(["tcpdump"]);
  const r = spawnSync("tcpdump", ["-r", file, "-n", "-xx"], { encoding: "utf8", timeout: 60_000 });
  if (r.status !== 0) throw new Error(`tcpdump -r ${file} failed (${r.status}): ${r.stderr}`);
  const frames: number[][] = [];
  for (const line of r.stdout.split("\n")) {
    if (/^\d\d:\d\d:\d\d\.\d+ /.test(line)) frames.push([]);
    const m = line.match(/^\s+0x[0-9a-f]+:\s+((?:[0-9a-f]{2,4}\s?)+)/);
    if (m) for (const w of m[1].trim().split(/\s+/)) for (let i = 0; i < w.length; i += 2) frames.at(-1)!.push(parseInt(w.slice(i, i + 2), 16));
  }
  return frames.map((f) => Uint8Array.from(f));
}

/** tshark -r FILE -T fields: one row of the asked fields per frame. */
export function tsharkFields(file: string, fields: string[]): string[][] {
  ensureDebPackages(["tshark"]);
  const r = spawnSync("tshark", ["-r", file, "-T", "fields", ...fields.flatMap((f) => ["-e", f])], { encoding: "utf8", timeout: 60_000 });
  if (r.status !== 0) throw new Error(`tshark -r ${file} failed (${r.status}): ${r.stderr}`);
  return r.stdout.split("\n").filter((l) => l !== "").map((l) => l.split("\t"));
}

export interface PcapngBlock {
  type: number;
  body: DataView;
}

/** The blocks of a little-endian pcapng file, checking each block's two lengths agree. */
export function pcapngBlocks(bytes: Uint8Array): PcapngBlock[] {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: PcapngBlock[] = [];
  for (let at = 0; at < bytes.length; ) {
    const type = dv.getUint32(at, true);
    const len = dv.getUint32(at + 4, true);
    if (len < 12 || len % 4 !== 0 || at + len > bytes.length || dv.getUint32(at + len - 4, true) !== len) throw new Error(`pcapng: bad block at ${at}`);
    out.push({ type, body: new DataView(bytes.buffer, bytes.byteOffset + at + 8, len - 12) });
    at += len;
  }
  return out;
}

/** isb_ifdrop (option 5) of the file's Interface Statistics block, or undefined without one. */
export function pcapngIfDrop(bytes: Uint8Array): number | undefined {
  const isb = pcapngBlocks(bytes).find((b) => b.type === 5);
  if (!isb) return undefined;
  for (let at = 12; at + 4 <= isb.body.byteLength; ) {
    const code = isb.body.getUint16(at, true);
    const len = isb.body.getUint16(at + 2, true);
    if (code === 0) break;
    if (code === 5) return isb.body.getUint32(at + 4, true) + isb.body.getUint32(at + 8, true) * 0x1_0000_0000;
    at += 4 + ((len + 3) & ~3);
  }
  return undefined;
}
