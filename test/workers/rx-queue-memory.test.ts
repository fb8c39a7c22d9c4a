// What a vif's rx queue costs before it holds anything: a queue is sized for the worst backlog
// (512 KiB by default, Linux's) but most vifs never queue a frame, so its pages must not be resident
// until written (1000 idle vifs used to hold ~500 MiB this way), and it grows with its deepest backlog.
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { DEFAULT_RX_QUEUE_BYTES, RxQueue } from "../../workers/rx-queue.ts";

/** Resident KiB of the mapping of this process that holds `addr` (from /proc/self/smaps). */
function residentKiB(addr: number): number {
  let inside = false;
  for (const l of readFileSync("/proc/self/smaps", "utf8").split("\n")) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) /.exec(l);
    if (head) inside = parseInt(head[1]!, 16) <= addr && addr < parseInt(head[2]!, 16);
    else if (inside && l.startsWith("Rss:")) return Number(/(\d+)/.exec(l)![1]);
  }
  throw new Error(`no mapping holds 0x${addr.toString(16)}`);
}

test("an rx queue nothing was queued on holds at most one page of memory; a backlog costs what it holds", () => {
  const q = new RxQueue(DEFAULT_RX_QUEUE_BYTES);
  try {
    expect(residentKiB(q.base)).toBeLessThanOrEqual(4);
    const frame = new Uint8Array(1500).fill(7);
    for (let i = 0; i < 40; i++) expect(q.push(frame, 0, frame.length)).toBe(true); // 60,000 bytes
    const held = residentKiB(q.base);
    expect(held).toBeGreaterThanOrEqual(56);
    expect(held).toBeLessThan(128);
    expect(q.lenOf(39)).toBe(1500);
  } finally {
    q.free();
  }
});
