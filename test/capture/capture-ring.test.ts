// The capture ring between a worker (CaptureWriter) and the main thread (CaptureRingReader), and the
// CaptureService on top: records intact across the ring's wrap, a full ring drops and counts instead
// of waiting, only a tx slot's own bytes are ever recorded (XSA-403), and drops reach the pcapng.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CaptureRingReader, createCaptureRing, DIR_GUEST_RX, DIR_GUEST_TX, type CaptureRecord } from "../../src/capture/capture-ring.ts";
import { CaptureService } from "../../src/capture/capture-service.ts";
import { createFrameBatch, freeFrameBatch } from "../../src/net/frame-batch.ts";
import { CaptureWriter } from "../../workers/capture-writer.ts";
import { WorkerScratch } from "../../workers/scratch.ts";
import { TxPath } from "../../workers/tx.ts";
import { counters, FakeGrants, frame, RecordingPeer, ringPage } from "../workers/helpers.ts";
import { pcapngIfDrop, tcpdumpFrames, tsharkFields } from "../support/pcap-tools.ts";

const batch = createFrameBatch(64, 2048);
const scratch = new WorkerScratch(64);
const dir = mkdtempSync(join(tmpdir(), "qnicd-capring-"));
afterAll(() => {
  freeFrameBatch(batch);
  scratch.free();
  rmSync(dir, { recursive: true, force: true });
});

/** Puts frames into the batch (frame i at base + i * stride); returns them. */
function fill(sizes: number[], seed: number): Uint8Array[] {
  return sizes.map((len, i) => {
    const f = frame(len, seed + i);
    batch.bytes.set(f, i * batch.stride);
    batch.lens[i] = len;
    return f;
  });
}

function copyOut(r: CaptureRecord) {
  return { id: r.id, dir: r.dir, origLen: r.origLen, bytes: r.bytes.slice() };
}

describe("capture ring", () => {
  test("records come out whole and in order, across many wraps of the ring, cut at snaplen", () => {
    const reader = new CaptureRingReader(createCaptureRing(8192));
    const writer = new CaptureWriter(reader.buffer);
    const e = reader.add(7, 3, 1, 1000);
    writer.refresh();
    expect(writer.active).toBe(true);
    const entry = writer.entryFor({ index: 3, generation: 1 });
    expect(entry).toBe(e);
    expect(writer.entryFor({ index: 3, generation: 2 })).toBe(-1); // a later tenant of the slot is not captured
    for (let round = 0; round < 40; round++) {
      const sizes = [60 + round, 1500, 14, 900 + 7 * round];
      const sent = fill(sizes, round);
      writer.write(entry, round % 2 ? DIR_GUEST_RX : DIR_GUEST_TX, batch.base, batch.stride, batch.lens, sizes.length);
      const got: ReturnType<typeof copyOut>[] = [];
      reader.drain((r) => got.push(copyOut(r)));
      expect(got.map((r) => [r.id, r.dir, r.origLen])).toEqual(sizes.map((s) => [7, round % 2, s]));
      expect(got.map((r) => r.bytes as Uint8Array)).toEqual(sent.map((f) => f.subarray(0, Math.min(f.length, 1000))));
    }
    expect(reader.dropped(e)).toBe(0);
    reader.remove(e);
    writer.refresh();
    expect(writer.active).toBe(false);
  });

  test("a full ring never makes the writer wait: what does not fit is dropped and counted, what fits is intact", () => {
    const reader = new CaptureRingReader(createCaptureRing(4096));
    const writer = new CaptureWriter(reader.buffer);
    const e = reader.add(1, 0, 1, 65535);
    writer.refresh();
    const sent: Uint8Array[] = [];
    for (let i = 0; i < 10; i++) {
      sent.push(...fill([1000, 1000], i * 2));
      writer.write(e, DIR_GUEST_TX, batch.base, batch.stride, batch.lens, 2); // nobody drains meanwhile
    }
    const got: Uint8Array[] = [];
    reader.drain((r) => got.push(r.bytes.slice()));
    expect(got.length).toBe(3); // 3 x (28 + 1000) bytes fit in 4096, a 4th does not
    expect(got).toEqual(sent.slice(0, 3));
    expect(reader.dropped(e)).toBe(17);
  });

  test("a tx frame is recorded as the guest's slot (offset, size) only, never the rest of the granted page (XSA-403)", () => {
    const r = ringPage();
    const gnt = new FakeGrants(9);
    const page = gnt.grant(5);
    page.fill(0xee); // whatever else the guest keeps in that page
    const f = frame(300, 1);
    page.set(f, 1000);
    r.dv.setUint32(64, 5, true);
    r.dv.setUint16(64 + 4, 1000, true); // offset
    r.dv.setUint16(64 + 8, 1, true); // id
    r.dv.setUint16(64 + 10, 300, true); // size
    Atomics.store(r.w, 0, 1);
    const tx = new TxPath(r.buf, 9);
    const pass = tx.service(64, scratch, gnt, new RecordingPeer("null"), counters());
    expect(pass.packets).toBe(1);
    const reader = new CaptureRingReader(createCaptureRing(8192));
    const writer = new CaptureWriter(reader.buffer);
    const e = reader.add(2, 0, 1, 65535);
    writer.refresh();
    const t = scratch.txFrames;
    writer.write(e, DIR_GUEST_TX, t.base, t.stride, t.lens, pass.packets);
    const got: Uint8Array[] = [];
    reader.drain((rec) => got.push(rec.bytes.slice()));
    expect(got).toEqual([f]);
  });
});

describe("capture service", () => {
  test("ends at its time limit with an Interface Statistics block counting the ring's and the slow client's drops", async () => {
    const ring = createCaptureRing(4096);
    const svc = new CaptureService({ ring: () => ring, userAppl: "qnicd test", pollMs: 5, maxBufferedBytes: 1500 });
    const stream = svc.start({ name: "vif4.0", worker: 0, slot: { index: 2, generation: 1 }, hostSide: "switch vif4.0" }, { count: 1000, seconds: 1, snaplen: 65535 });
    const writer = new CaptureWriter(ring);
    writer.refresh();
    const e = writer.entryFor({ index: 2, generation: 1 });
    expect(e).toBeGreaterThanOrEqual(0);
    // 6 frames of 1000 bytes: 3 fit in the ring (3 dropped there); of those, a stream allowed 1500
    // unread bytes takes 2 after its headers (it stops once full), and drops the third.
    fill([1000, 1000, 1000, 1000, 1000, 1000], 1);
    writer.write(e, DIR_GUEST_TX, batch.base, batch.stride, batch.lens, 6);
    await Bun.sleep(50);
    expect(svc.running).toBe(1);
    const bytes = new Uint8Array(await new Response(stream).arrayBuffer());
    expect(svc.running).toBe(0);
    const file = join(dir, "svc.pcapng");
    writeFileSync(file, bytes);
    const frames = tcpdumpFrames(file);
    expect(frames.length).toBe(2);
    expect(pcapngIfDrop(bytes)).toBe(4);
    expect(tsharkFields(file, ["frame.interface_name", "frame.len"])).toEqual([["vif4.0", "1000"], ["vif4.0", "1000"]]);
  });
});
