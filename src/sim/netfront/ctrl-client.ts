// The frontend's end of the netif control ring, as the Windows PV drivers drive it (xcp-ng
// win-xenvif src/xenvif/controller.c and frontend.c; Linux netfront has no control ring): one page
// granted to the backend with SHARED_RING_INIT, an unbound event channel, both announced as
// ctrl-ring-ref and event-channel-ctrl in the connect transaction; then, once Connected, one request
// at a time, each waited for by polling the ring (every 10 ms here, 100 ms there) for at most 5 s:
// SET_HASH_ALGORITHM (Toeplitz), SET_HASH_MAPPING_SIZE, SET_HASH_MAPPING, SET_HASH_KEY (40 bytes),
// SET_HASH_FLAGS. The key and mapping travel in a page granted read-only for the request.
//
// Hostile variants for tests (CtrlHostility): a key longer than netback takes, a mapping naming a
// queue that does not exist, and req_prod moved far ahead of the requests really posted.
import type { GuestDomain } from "../hypervisor/index.ts";
import {
  CtrlRequest,
  CtrlResponse,
  NETIF_CTRL_RING_SIZE,
  NETIF_CTRL_SLOT_SIZE,
  XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ,
  XEN_NETIF_CTRL_HASH_TYPES_ALL,
  XEN_NETIF_CTRL_TYPE_SET_HASH_ALGORITHM,
  XEN_NETIF_CTRL_TYPE_SET_HASH_FLAGS,
  XEN_NETIF_CTRL_TYPE_SET_HASH_KEY,
  XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING,
  XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING_SIZE,
} from "../../xen/ctrl-netif.ts";
import { FrontRing } from "./front-ring.ts";

/** WINVIF's wait for one response: 5 s, polled. */
export const CTRL_TIMEOUT_MS = 5000;
const POLL_MS = 10;

/** The RSS key Windows uses unless configured otherwise (the Toeplitz test vectors' key). */
export const DEFAULT_HASH_KEY = Uint8Array.from(Buffer.from("6d5a56da255b0ec24167253d43a38fb0d0ca2bcbae7b30b477cb2da38030f20c6a42b73bbeac01fa", "hex"));

export type CtrlHostility = "oversized-key" | "mapping-beyond-queues" | "req-prod-far-ahead";

export interface HashSetup {
  key?: Uint8Array;
  /** Hash types to enable (default every one). */
  flags?: number;
  /** The mapping table (default 128 entries, all queue 0). */
  mapping?: number[];
}

export interface CtrlResult {
  type: number;
  status: number;
  data: number;
}

export class CtrlClient {
  readonly ref: number;
  readonly port: number;
  private readonly frame: number;
  private readonly ring: FrontRing;
  private readonly view: DataView;
  private nextId = 0;
  private released = false;

  constructor(private readonly guest: GuestDomain, private readonly backendDomid: number) {
    this.frame = guest.allocPage();
    this.ring = new FrontRing(guest.pageView(this.frame), NETIF_CTRL_RING_SIZE);
    this.ring.init();
    const page = guest.pageView(this.frame);
    this.view = new DataView(page.buffer, page.byteOffset, page.byteLength);
    this.ref = guest.grantAccess(backendDomid, this.frame, false);
    this.port = guest.evtchn.bindUnboundPort(backendDomid);
  }

  /** The nodes written in the connect transaction. */
  nodes(): Record<string, string> {
    return { "ctrl-ring-ref": String(this.ref), "event-channel-ctrl": String(this.port) };
  }

  /** Posts one request, notifies, and polls for its response (CTRL_TIMEOUT_MS). */
  async request(type: number, d0 = 0, d1 = 0, d2 = 0): Promise<CtrlResult> {
    const ring = this.ring;
    const idx = ring.reqProdPvt;
    const o = ring.slot(idx, NETIF_CTRL_SLOT_SIZE);
    const id = this.nextId++ & 0xffff;
    this.view.setUint16(o + CtrlRequest.id, id, true);
    this.view.setUint16(o + CtrlRequest.type, type, true);
    this.view.setUint32(o + CtrlRequest.data0, d0 >>> 0, true);
    this.view.setUint32(o + CtrlRequest.data1, d1 >>> 0, true);
    this.view.setUint32(o + CtrlRequest.data2, d2 >>> 0, true);
    ring.reqProdPvt = (idx + 1) >>> 0;
    if (ring.pushRequests()) this.guest.evtchn.notify(this.port);
    const deadline = Date.now() + CTRL_TIMEOUT_MS;
    while (ring.rspProd() >>> 0 === ring.rspCons >>> 0) {
      if (this.released) throw new Error("control ring released");
      if (Date.now() > deadline) throw new Error(`control ring: no response to request type ${type} within ${CTRL_TIMEOUT_MS} ms`);
      await Bun.sleep(POLL_MS);
    }
    const r = ring.slot(ring.rspCons, NETIF_CTRL_SLOT_SIZE);
    const rsp = { id: this.view.getUint16(r + CtrlResponse.id, true), type: this.view.getUint16(r + CtrlResponse.type, true), status: this.view.getUint32(r + CtrlResponse.status, true), data: this.view.getUint32(r + CtrlResponse.data, true) };
    ring.rspCons = (ring.rspCons + 1) >>> 0;
    if (rsp.id !== id) throw new Error(`control ring: response id ${rsp.id} to request ${id}`);
    return { type: rsp.type, status: rsp.status, data: rsp.data };
  }

  /** A request carrying `bytes` in a page granted read-only for its duration. */
  private async withPage(bytes: Uint8Array, run: (ref: number) => Promise<CtrlResult>): Promise<CtrlResult> {
    const frame = this.guest.allocPage();
    this.guest.pageView(frame).set(bytes.subarray(0, 4096));
    const ref = this.guest.grantAccess(this.backendDomid, frame, true);
    try {
      return await run(ref);
    } finally {
      if (this.guest.endAccess(ref)) this.guest.freePage(frame);
    }
  }

  /**
   * WINVIF's sequence (FrontendSetHashAlgorithm / Mapping / Key / Types): algorithm Toeplitz, the
   * mapping's size and entries, a 40-byte key, the hash types. Returns each response; `hostile`
   * replaces one step with its hostile variant (the rest still runs).
   */
  async configureHash(setup: HashSetup = {}, hostile?: CtrlHostility): Promise<CtrlResult[]> {
    const key = setup.key ?? DEFAULT_HASH_KEY;
    const mapping = setup.mapping ?? new Array(128).fill(0);
    const out: CtrlResult[] = [];
    out.push(await this.request(XEN_NETIF_CTRL_TYPE_SET_HASH_ALGORITHM, XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ));
    out.push(await this.request(XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING_SIZE, mapping.length));
    const table = hostile === "mapping-beyond-queues" ? mapping.map((q, i) => (i === mapping.length - 1 ? 64 : q)) : mapping;
    out.push(await this.withPage(new Uint8Array(Uint32Array.from(table).buffer), (ref) => this.request(XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING, ref, table.length, 0)));
    const keyLen = hostile === "oversized-key" ? key.length + 1 : key.length;
    const keyBytes = new Uint8Array(keyLen);
    keyBytes.set(key);
    out.push(await this.withPage(keyBytes, (ref) => this.request(XEN_NETIF_CTRL_TYPE_SET_HASH_KEY, ref, keyLen)));
    out.push(await this.request(XEN_NETIF_CTRL_TYPE_SET_HASH_FLAGS, setup.flags ?? XEN_NETIF_CTRL_HASH_TYPES_ALL));
    if (hostile === "req-prod-far-ahead") this.setReqProd((this.ring.reqProdPvt + 0x1000) >>> 0);
    return out;
  }

  /** Hostile: publishes `prod` as req_prod without posting requests, and kicks the backend. */
  setReqProd(prod: number): void {
    this.ring.reqProdPvt = prod >>> 0;
    this.ring.pushRequests();
    this.guest.evtchn.notify(this.port);
  }

  /** The ring's shared indices (tests). */
  header() {
    return this.ring.header();
  }

  /** Unbinds the port and ends the ring's grant; returns grants the backend still mapped (0 or 1). */
  release(): number {
    if (this.released) return 0;
    this.released = true;
    try {
      this.guest.evtchn.unbind(this.port);
    } catch {}
    if (this.guest.endAccess(this.ref)) {
      this.guest.freePage(this.frame);
      return 0;
    }
    return 1;
  }
}
