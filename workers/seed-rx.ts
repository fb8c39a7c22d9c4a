// Guest rx the seed's way (QEMU hw/net/xen_nic.c, net_rx_packet), behind `--datapath seed`: the
// baseline for workers/rx.ts. Frames come from the peer one at a time (a one-frame receive), and
// each takes one rx request: copied out of the ring, its page mapped writable (GrantDevice.map, one
// ref), the frame copied in at offset 2 (NET_IP_ALIGN), unmapped, the response written in the
// request's slot, pushed, rsp_event checked and the frontend notified at once if it asked.
//
// With no request posted the seed returns 0 and QEMU's net queue holds the frame until the guest
// posts; here the frame waits in the same byte-bounded RxQueue the batched path uses (XSA-392), with
// the same carrier handling (rx_stall_timeout; both in rx-backlog.ts), so a guest that never refills
// behaves and is counted the same on both paths. Map and unmap are counted as two system calls each, as on Xen (see seed-tx.ts).
import { toArrayBuffer } from "bun:ffi";
import type { FrameBatch, Peer } from "../src/net/index.ts";
import type { GrantDevice, GrantMapping } from "../src/platform/types.ts";
import type { VifCounters } from "../src/stats/index.ts";
import { NETIF_RSP_ERROR } from "../src/xen/netif.ts";
import { RX_MAX_FRAME, RX_OFFSET } from "./rx.ts";
import { BackloggedRxRing, type RxPass } from "./rx-backlog.ts";
import { RX_BATCH, type WorkerScratch } from "./scratch.ts";
import { oneFrameOf, seedNotify, type SeedNotifyTarget } from "./seed-tx.ts";
import type { RingJournal } from "./back-ring.ts";

export class SeedRxPath extends BackloggedRxRing {
  /** Set by the served vif once its event channel is bound. */
  notifyTarget: SeedNotifyTarget | null = null;
  private one: FrameBatch | null = null;
  private oneBytes: Uint8Array | null = null;

  constructor(page: ArrayBuffer, private readonly domid: number, queueBytes: number, stallMs: number, journal?: RingJournal | null, opts: { rxNotify?: boolean } = {}) {
    super(page, queueBytes, stallMs, journal, { rxNotify: opts.rxNotify });
  }

  /**
   * Same shape as RxPath.service: queued frames first, then (when `peer` is given) up to
   * `rounds` x RX_BATCH frames received one at a time. `notify` is always false: each response
   * was notified as it was pushed.
   */
  service(peer: Peer | null, rounds: number, s: WorkerScratch, gnt: GrantDevice, c: VifCounters): RxPass {
    const pass = this.pass;
    if (!this.beginPass()) return pass;
    const start = this.rspProdPvt;
    this.drainQueue(gnt, c);
    if (pass.fault !== null) return pass;
    if (peer) {
      if (this.one === null || this.oneBytes !== s.rxFrames.bytes) {
        this.one = oneFrameOf(s.rxFrames);
        this.oneBytes = s.rxFrames.bytes;
      }
      const one = this.one;
      const limit = rounds * RX_BATCH;
      for (let i = 0; i < limit; i++) {
        const sys = peer.syscalls, ffi = peer.ffiCalls;
        const n = peer.receive(one);
        c.ffi_calls += peer.ffiCalls - ffi;
        c.syscalls += peer.syscalls - sys;
        if (n === 0) break;
        this.accept(one.lens[0], gnt, c);
        if (pass.fault !== null) return pass;
        if (i + 1 === limit) pass.more = true;
      }
    }
    if (this.rspProdPvt !== start) c.rx_batches++;
    this.watchStall(c);
    c.rx_queue_bytes = this.queue.bytes;
    return pass;
  }

  /** Frames the guest had no buffer for, oldest first, while it has buffers now. */
  private drainQueue(gnt: GrantDevice, c: VifCounters): void {
    const q = this.queue;
    if (q.length === 0 && this.carrier) return;
    for (;;) {
      const avail = this.available(this.pass);
      if (avail <= 0) return;
      this.carrierOn(c, avail);
      if (q.length === 0) return;
      const len = q.lenOf(0);
      const src = new Uint8Array(toArrayBuffer(q.addrOf(0), 0, len));
      q.take(1);
      this.deliver(src, len, gnt, c);
      q.commit();
    }
  }

  /** One frame from the peer (in the scratch rx batch's first slot): delivered, queued or dropped. */
  private accept(len: number, gnt: GrantDevice, c: VifCounters): void {
    if (len > RX_MAX_FRAME || !this.carrier) {
      c.rx_drops++; // too big for one buffer (the seed drops these too), or the carrier is off
      return;
    }
    const bytes = this.oneBytes!;
    const avail = this.available(this.pass);
    if (avail < 0) return;
    if (this.queue.length > 0 || avail === 0) {
      if (!this.queue.push(bytes, 0, len)) c.rx_drops++;
      return;
    }
    this.deliver(bytes.subarray(0, len), len, gnt, c);
  }

  /** net_rx_packet's work for one frame and one request. */
  private deliver(src: Uint8Array, len: number, gnt: GrantDevice, c: VifCounters): void {
    // memcpy(&rxreq, RING_GET_REQUEST(...)): id and gref read once (XSA-155).
    this.takeRequest(this.reqCons);
    const id = this.req.id;
    const gref = this.req.gref;
    this.reqCons = (this.reqCons + 1) >>> 0;
    let m: GrantMapping;
    c.ffi_calls++;
    try {
      m = gnt.map(this.domid, [gref], true);
    } catch {
      c.syscalls++; // the map ioctl that failed
      c.rx_errors++;
      this.respond(id, 0, NETIF_RSP_ERROR, c);
      return;
    }
    c.syscalls += 2; // IOCTL_GNTDEV_MAP_GRANT_REF + mmap
    new Uint8Array(m.buffer, RX_OFFSET, len).set(src);
    m.unmap();
    c.ffi_calls++;
    c.syscalls += 2; // munmap + IOCTL_GNTDEV_UNMAP_GRANT_REF
    c.rx_packets++;
    c.rx_bytes += len;
    this.respond(id, RX_OFFSET, len, c);
    this.rxSeq++; // netback's last_rx_time: a frame was placed
  }

  /** net_rx_response: written in the request's slot, pushed, rsp_event checked, notified if asked. */
  private respond(id: number, offset: number, status: number, c: VifCounters): void {
    const old = this.rspProdPvt;
    this.stageResponse(old, id, offset, 0, status);
    this.rspProdPvt = (old + 1) >>> 0;
    if (this.publish(old)) seedNotify(this.notifyTarget, c);
  }
}
