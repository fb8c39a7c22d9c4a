// Guest tx the seed's way (QEMU hw/net/xen_nic.c, net_tx_packets), behind `--datapath seed`: the
// baseline the batched path (workers/tx.ts) is measured against, so the gain from batching is
// measured, not claimed. Per request, one at a time:
//   copy the slot out and validate it (size >= 14, offset + size within the page), map that one
//   grant read-only (GrantDevice.map, one ref), copy the frame out of the mapping, unmap, hand the
//   frame to the peer alone, write the response, push it and check rsp_event (notify at once when
//   the frontend asked): RING_PUSH_RESPONSES_AND_CHECK_NOTIFY per response, as net_tx_response does.
//
// Where the seed is wrong, this path is not: a packet with more_data or extra_info (never
// negotiated) has ALL its slots answered (errors, NULL for extra-info slots) like the batched path
// and netback, rather than the seed's first slot only (which then misreads an extra-info slot as a
// request), and the batched path's protocol checks (req_prod overflow, packets past req_prod or
// over 20 slots, unknown extra types, a first slot crossing its page) disable the vif. The cost model is the seed's: the hostile
// cases are rare and cost the same on both paths.
//
// Counters: a grant map is two system calls on Xen (IOCTL_GNTDEV_MAP_GRANT_REF + mmap) and so is an
// unmap (munmap + IOCTL_GNTDEV_UNMAP_GRANT_REF); they are counted as such on the sim too.
import type { FrameBatch, Peer } from "../src/net/index.ts";
import { fillChecksums } from "../src/net/index.ts";
import type { EventChannelDevice, GrantDevice, GrantMapping } from "../src/platform/types.ts";
import type { VifCounters } from "../src/stats/index.ts";
import { NETIF_RSP_ERROR, NETIF_RSP_NULL, NETIF_RSP_OKAY, NETTXF_csum_blank, NETTXF_extra_info, NETTXF_more_data } from "../src/xen/netif.ts";
import { PAGE_SIZE } from "../src/xen/ring.ts";
import { crossPageMessage, R_NULL } from "./ring-checks.ts";
import type { RingJournal } from "./back-ring.ts";
import { TxRing } from "./tx-ring.ts";
import type { WorkerScratch } from "./scratch.ts";
import type { TxPass } from "./tx.ts";

const ETH_HLEN = 14;
const PAGE = PAGE_SIZE;
const UNSUPPORTED = NETTXF_more_data | NETTXF_extra_info;

/** Where a seed path sends its per-response notifications (bound after the rings are mapped). */
export interface SeedNotifyTarget {
  ev: EventChannelDevice;
  port: number;
}

/** A one-frame view of a scratch batch: the seed hands frames to the peer one at a time. */
export function oneFrameOf(b: FrameBatch): FrameBatch {
  return { base: b.base, stride: b.stride, capacity: 1, lens: b.lens, lensAddr: b.lensAddr, meta: b.meta, metaAddr: b.metaAddr, count: 0 };
}

/** Sends one notification, never throwing (a frontend whose domain died has no port to notify). */
export function seedNotify(t: SeedNotifyTarget | null, c: VifCounters): void {
  if (!t || t.port === 0) return;
  c.ffi_calls++;
  c.syscalls++;
  try {
    t.ev.notify(t.port);
    c.notifies_sent++;
  } catch {
    // the port is gone (domain destroyed); the backend tears the vif down
  }
}

export class SeedTxPath extends TxRing {
  /** Set by the served vif once its event channel is bound. */
  notifyTarget: SeedNotifyTarget | null = null;
  private readonly pass: TxPass = { packets: 0, slots: 0, notify: false, more: false, fault: null, throttled: false };
  private one: FrameBatch | null = null;
  private oneBytes: Uint8Array | null = null;
  private readonly csum = new Uint8Array(1);

  constructor(page: ArrayBuffer, private readonly domid: number, journal?: RingJournal | null) {
    super(page, journal);
  }

  /** Same shape as TxPath.service; `notify` is always false: every response was notified as it was pushed. */
  service(budget: number, s: WorkerScratch, gnt: GrantDevice, peer: Peer, c: VifCounters): TxPass {
    const pass = this.pass;
    pass.packets = pass.slots = 0;
    pass.notify = pass.more = false;
    pass.fault = null;
    const prod = this.checkedReqProd(pass);
    if (prod < 0) return pass;
    if (this.one === null || this.oneBytes !== s.txFrames.bytes) {
      this.one = oneFrameOf(s.txFrames);
      this.oneBytes = s.txFrames.bytes;
    }
    const one = this.one;
    const bytes = this.oneBytes!;
    const req = this.req;
    const start = this.rspProdPvt;
    let handled = 0;
    while (this.reqCons !== prod && handled < budget) {
      handled++;
      const first = this.reqCons;
      // memcpy(&txreq, RING_GET_REQUEST(...)): only these locals are used from here on (XSA-155).
      this.takeRequest(first);
      const gref = req.gref;
      const offset = req.offset;
      const flags = req.flags;
      const id = req.id;
      const size = req.size;
      if (flags & UNSUPPORTED) {
        const fault = this.answerUnsupported(s, first, flags, id, size, prod, c);
        if (fault) {
          pass.fault = fault;
          break;
        }
        continue;
      }
      if (size >= ETH_HLEN && offset + size > PAGE) {
        // Fatal, as netback's "Cross page boundary" (the seed answered it ERROR); not consumed.
        pass.fault = crossPageMessage(first, offset, size);
        break;
      }
      this.reqCons = (first + 1) >>> 0;
      if (size < ETH_HLEN) {
        this.respond(id, NETIF_RSP_ERROR, c);
        continue;
      }
      let m: GrantMapping;
      c.ffi_calls++;
      try {
        m = gnt.map(this.domid, [gref], false);
      } catch {
        c.syscalls++; // the map ioctl that failed
        this.respond(id, NETIF_RSP_ERROR, c);
        continue;
      }
      c.syscalls += 2; // IOCTL_GNTDEV_MAP_GRANT_REF + mmap
      bytes.set(new Uint8Array(m.buffer, offset, size), 0);
      m.unmap();
      c.ffi_calls++;
      c.syscalls += 2; // munmap + IOCTL_GNTDEV_UNMAP_GRANT_REF
      one.lens[0] = size;
      one.count = 1;
      if (flags & NETTXF_csum_blank) {
        this.csum[0] = 1;
        fillChecksums(one, this.csum);
        c.ffi_calls++;
      }
      const sys = peer.syscalls, ffi = peer.ffiCalls;
      const taken = peer.send(one);
      c.ffi_calls += peer.ffiCalls - ffi;
      c.syscalls += peer.syscalls - sys;
      c.tx_packets++;
      c.tx_bytes += size;
      if (taken < 1) c.tx_drops++;
      pass.packets++;
      this.respond(id, NETIF_RSP_OKAY, c);
    }
    pass.slots = (this.rspProdPvt - start) >>> 0;
    pass.more = pass.fault === null && this.reqCons !== prod;
    if (pass.slots > 0) c.tx_batches++;
    return pass;
  }

  /**
   * A packet using a feature we never offered: every slot of it answered (first ERROR, extra-info
   * slots NULL, fragments ERROR), each pushed on its own as the seed pushes. Returns why the packet
   * breaks the protocol instead (nothing consumed then: the vif is going away).
   */
  private answerUnsupported(s: WorkerScratch, first: number, flags: number, id: number, size: number, prod: number, c: VifCounters): string | null {
    // Walk first, answer after: a violation must not leave half a packet answered. The batched
    // path's response arrays serve as the seed's (a worker serves one vif at a time).
    const fault = this.walk(first, flags, size, prod, false, s, 0);
    if (fault !== null) return fault;
    const n = this.walked.nresp;
    this.reqCons = this.walked.cons;
    this.respond(id, NETIF_RSP_ERROR, c);
    for (let k = 1; k < n; k++) this.respond(s.txRespId[k], s.txRespSeg[k] === R_NULL ? NETIF_RSP_NULL : NETIF_RSP_ERROR, c);
    return null;
  }

  /** net_tx_response: one response written, pushed, rsp_event checked, notified if asked. */
  private respond(id: number, status: number, c: VifCounters): void {
    const old = this.rspProdPvt;
    // Extra-info slots get only a status (NULL), no id, as netback's make_tx_response.
    this.stageResponse(old, status !== NETIF_RSP_NULL ? id : 0, status);
    if (status === NETIF_RSP_ERROR) c.tx_errors++;
    this.rspProdPvt = (old + 1) >>> 0;
    if (this.publish(old)) seedNotify(this.notifyTarget, c);
  }

}
