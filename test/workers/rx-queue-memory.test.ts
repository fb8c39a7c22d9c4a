// What a vif's rx queue costs before it holds anything: a queue is sized for the worst backlog
// (512 KiB by default, Linux's) but most vifs never queue a frame, so its pages must not be resident
// until written (1000 idle vifs used to hold ~500 MiB this way), and it grows with its deepest backlog.
import { expect, test } from "bun:test";
import type { Pointer } from "bun:ffi";
import { closeSync, openSync, readFileSync, readSync } from "node:fs";
import { peerio } from "../../src/net/peerio-lib.ts";
import { DEFAULT_RX_QUEUE_BYTES, RxQueue } from "../../workers/rx-queue.ts";

/** Resident KiB of [addr, addr + len) in this process, page by page (/proc/self/pagemap bit 63: present). */
function residentKiB(addr: number, len: number): number {
  const first = Math.floor(addr / 4096);
  const pages = Math.ceil((addr + len) / 4096) - first;
  const fd = openSync("/proc/self/pagemap", "r");
  try {
    const buf = Buffer.alloc(pages * 8);
    readSync(fd, buf, 0, buf.length, first * 8);
    let present = 0;
    for (let i = 0; i < pages; i++) if (buf.readBigUInt64LE(i * 8) >> 63n) present++;
    return present * 4;
  } finally {
    closeSync(fd);
  }
}

test("an rx queue nothing was queued on holds at most one page of memory; a backlog costs what it holds", () => {
  const q = new RxQueue(DEFAULT_RX_QUEUE_BYTES);
  try {
    expect(residentKiB(q.base, DEFAULT_RX_QUEUE_BYTES + 4096)).toBeLessThanOrEqual(4);
    const frame = new Uint8Array(1500).fill(7);
    for (let i = 0; i < 40; i++) expect(q.push(frame, 0, frame.length)).toBe(true); // 60,000 bytes
    const held = residentKiB(q.base, DEFAULT_RX_QUEUE_BYTES + 4096);
    expect(held).toBeGreaterThanOrEqual(56);
    expect(held).toBeLessThan(128);
    expect(q.lenOf(39)).toBe(1500);
  } finally {
    q.free();
  }
});

test("pio_free unmaps what pio_alloc mapped and hands other blocks to free() (a dead worker's buffers are freed by address, some from libc)", () => {
  const { dlopen, FFIType } = require("bun:ffi") as typeof import("bun:ffi");
  const libc = dlopen(process.platform === "linux" ? "libc.so.6" : "libc.dylib", { aligned_alloc: { args: [FFIType.u64, FFIType.u64], returns: FFIType.ptr } }).symbols;
  const mapped = peerio().pio_alloc(1 << 20) as number;
  expect(residentKiB(mapped, 1 << 20)).toBe(0);
  const inMaps = (a: number) => readFileSync("/proc/self/maps", "utf8").split("\n").some((l) => {
    const m = /^([0-9a-f]+)-([0-9a-f]+) /.exec(l);
    return m !== null && parseInt(m[1]!, 16) <= a && parseInt(m[2]!, 16) > a; // a neighbour may have merged into it
  });
  expect(inMaps(mapped)).toBe(true);
  peerio().pio_free(mapped as Pointer);
  expect(inMaps(mapped)).toBe(false);
  const fromLibc = libc.aligned_alloc(64, 6144) as number;
  peerio().pio_free(fromLibc as Pointer); // free(): no crash, no unmapping of a neighbour
  const again = peerio().pio_alloc(100) as number;
  expect(again).not.toBe(0);
  peerio().pio_free(again as Pointer);
});
