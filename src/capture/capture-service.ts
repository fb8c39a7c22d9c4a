// Captures in the main thread: a capture asks the vif's worker (through the worker's capture ring,
// never a message) to record the vif's frames, drains the ring every few milliseconds, and streams
// what it finds as pcapng until `count` frames or `seconds` have passed or the client goes away.
//
// Bounded everywhere: the ring is fixed per worker (the worker drops what does not fit), and each
// capture's stream holds at most `maxBufferedBytes` a slow client has not read yet (records beyond
// are dropped here). Drops of both kinds are counted and reported at the end of the capture, in the
// pcapng Interface Statistics block (isb_ifdrop, and a comment) and in the log.
import { CaptureRingReader, DIR_GUEST_TX, type CaptureRecord } from "./capture-ring.ts";
import { enhancedPacket, EPB_INBOUND, EPB_OUTBOUND, interfaceDescription, interfaceStatistics, sectionHeader } from "./pcapng.ts";
import type { SlotRef } from "../stats/index.ts";
import type { Logger } from "../log.ts";

export interface CaptureTarget {
  /** vif<domid>.<devid>: the pcapng interface name. */
  name: string;
  worker: number;
  slot: SlotRef;
  /** What the vif is on the host side, for the interface description. */
  hostSide: string;
}

export interface CaptureLimits {
  count: number;
  seconds: number;
  snaplen: number;
}

export interface CaptureServiceOptions {
  /** The capture ring of worker `w` (WorkerPool.captureRing). */
  ring(worker: number): SharedArrayBuffer | undefined;
  userAppl: string;
  log?: Logger;
  /** How often rings are drained while a capture runs (default 20 ms). */
  pollMs?: number;
  /** Most bytes one capture's stream holds for a client that does not read (default 4 MiB). */
  maxBufferedBytes?: number;
}

export class CaptureError extends Error {
  constructor(message: string, readonly status: 404 | 409 | 503) {
    super(message);
    this.name = "CaptureError";
  }
}

interface Session {
  id: number;
  target: CaptureTarget;
  limits: CaptureLimits;
  reader: CaptureRingReader;
  entry: number;
  controller: ReadableStreamDefaultController<Uint8Array>;
  startMicros: number;
  deadline: number;
  captured: number;
  /** Records dropped here because the client read too slowly. */
  slowDrops: number;
  done: boolean;
}

export class CaptureService {
  private readonly sessions = new Map<number, Session>();
  private readonly readers = new Map<number, CaptureRingReader>();
  private nextId = 1;
  private timer: ReturnType<typeof setInterval> | null = null;

  constructor(private readonly opts: CaptureServiceOptions) {}

  /** Starts a capture; the stream ends by itself at the limits. Throws CaptureError when it cannot start. */
  start(target: CaptureTarget, limits: CaptureLimits): ReadableStream<Uint8Array> {
    const buf = this.opts.ring(target.worker);
    if (!buf) throw new CaptureError(`${target.name}: its worker ${target.worker} has no capture ring`, 503);
    let reader = this.readers.get(target.worker);
    if (!reader || reader.buffer !== buf) this.readers.set(target.worker, (reader = new CaptureRingReader(buf)));
    const id = this.nextId++;
    // Records already in the ring belong to earlier captures: only this one's id is kept from here on.
    const entry = reader.add(id, target.slot.index, target.slot.generation, limits.snaplen);
    if (entry < 0) throw new CaptureError(`${target.name}: worker ${target.worker} already runs its maximum of captures: try again when one ends`, 409);
    const maxBuffered = this.opts.maxBufferedBytes ?? 4 << 20;
    let session!: Session;
    const stream = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          session = {
            id,
            target,
            limits,
            reader: reader!,
            entry,
            controller,
            startMicros: nowMicros(),
            deadline: Date.now() + limits.seconds * 1000,
            captured: 0,
            slowDrops: 0,
            done: false,
          };
          controller.enqueue(sectionHeader(this.opts.userAppl));
          controller.enqueue(interfaceDescription(target.name, `qnicd vif ${target.name} (${target.hostSide}); In = sent by the guest, Out = delivered to the guest`, limits.snaplen));
        },
        cancel: () => this.end(session, false),
      },
      { highWaterMark: maxBuffered, size: (chunk) => chunk?.byteLength ?? 0 },
    );
    this.sessions.set(id, session);
    this.timer ??= setInterval(() => this.poll(), this.opts.pollMs ?? 20);
    return stream;
  }

  /** How many captures are running (tests, /health later). */
  get running(): number {
    return this.sessions.size;
  }

  /** Ends every capture (daemon stop). */
  close(): void {
    for (const s of [...this.sessions.values()]) this.end(s, true);
  }

  private poll(): void {
    const workers = new Set([...this.sessions.values()].map((s) => s.target.worker));
    for (const w of workers) this.readers.get(w)?.drain((r) => this.record(r));
    const now = Date.now();
    for (const s of [...this.sessions.values()]) if (now >= s.deadline) this.end(s, true);
  }

  private record(r: CaptureRecord): void {
    const s = this.sessions.get(r.id);
    if (!s || s.done) return; // a capture that ended meanwhile
    if ((s.controller.desiredSize ?? 0) <= 0) {
      s.slowDrops++;
      return;
    }
    // Direction as tcpdump on a Linux netback vif shows it: the host interface receives (In) what
    // the guest sends, and sends (Out) what the guest receives.
    s.controller.enqueue(enhancedPacket(r.tsMicros, r.bytes, r.origLen, r.dir === DIR_GUEST_TX ? EPB_INBOUND : EPB_OUTBOUND));
    if (++s.captured >= s.limits.count) this.end(s, true);
  }

  private end(s: Session, finish: boolean): void {
    if (!s || s.done) return;
    s.done = true;
    const ringDrops = s.reader.dropped(s.entry);
    s.reader.remove(s.entry);
    this.sessions.delete(s.id);
    if (this.sessions.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
    const dropped = ringDrops + s.slowDrops;
    const why = `${s.captured} frames captured, ${dropped} dropped (${ringDrops} by the worker's full capture ring, ${s.slowDrops} by a client reading too slowly)`;
    if (dropped > 0) this.opts.log?.warn(`${s.target.name}: capture ended: ${why}`);
    else this.opts.log?.info(`${s.target.name}: capture ended: ${why}`);
    if (!finish) return; // the client went away: nobody to tell
    try {
      s.controller.enqueue(interfaceStatistics(s.startMicros, nowMicros(), dropped, `qnicd: ${why}`));
      s.controller.close();
    } catch {
      // the stream was cancelled meanwhile
    }
  }
}

function nowMicros(): number {
  return Math.floor((performance.timeOrigin + performance.now()) * 1000);
}
