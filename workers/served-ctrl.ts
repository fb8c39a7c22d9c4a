// A vif's control ring as its worker serves it: the mapped page, the bound port, the ring
// (ctrl-ring.ts) and its native memory, set up all or nothing and released in one place, like the
// data rings in served-vif.ts. Only vifs whose frontend wrote ctrl-ring-ref and event-channel-ctrl
// have one (Linux netback's xenvif_connect_ctrl / xenvif_disconnect_ctrl).
import { RESOURCE_MEMORY } from "../src/pool/device-registry.ts";
import { PlatformError, type GrantDevice, type GrantMapping } from "../src/platform/types.ts";
import { CtrlRing, type CtrlPass } from "./ctrl-ring.ts";
import { EPROTO, ErrnoError } from "./failure-errno.ts";
import type { QueueDevices as VifDevices } from "./served-queue.ts";
import type { VifHash } from "./vif-hash.ts";

export class ServedCtrl {
  private map: GrantMapping | null = null;
  private mapEntry = -1;
  private memEntries: number[] = [];
  private ring: CtrlRing | null = null;
  /** The local port bound to the frontend's event-channel-ctrl (0 until bound). */
  port = 0;
  /** Its event fired (or it was just attached): serve it on this wake-up. */
  pending = true;

  /** Maps ctrl-ring-ref, attaches the ring, binds event-channel-ctrl; throws one line naming the vif and the step, having released what it took. */
  constructor(d: VifDevices, name: string, domid: number, ref: number, remotePort: number, hash: VifHash) {
    try {
      try {
        this.map = d.gnt.map(domid, [ref], true);
      } catch (e) {
        throw new Error(`${name}: failed to map ctrl-ring-ref ${ref}: ${reason(e)}`, { cause: e });
      }
      this.mapEntry = d.registry.addMapping(this.map.addr, this.map.pages);
      if (this.mapEntry < 0) throw new Error(`${name}: failed to map ctrl-ring-ref ${ref}: the worker's mapping table is full`);
      this.ring = new CtrlRing(this.map.buffer, domid, hash);
      for (const a of this.ring.allocations()) {
        const e = d.registry.addResource(RESOURCE_MEMORY, a);
        if (e < 0) throw new Error(`${name}: cannot record its control ring's memory: the worker's resource table is full`);
        this.memEntries.push(e);
      }
      const bad = this.ring.attachError();
      if (bad) throw new ErrnoError(`${name}: ${bad}`, EPROTO);
      try {
        this.port = d.ev.bindInterdomain(domid, remotePort);
      } catch (e) {
        throw new Error(`${name}: failed to bind event-channel-ctrl ${remotePort} of dom${domid}: ${reason(e)}`, { cause: e });
      }
    } catch (e) {
      this.close(d);
      throw e;
    }
  }

  /** One pass over the ring (its caller notifies `port` when asked to). */
  serve(gnt: GrantDevice): CtrlPass {
    this.pending = false;
    return this.ring!.service(gnt);
  }

  /** Releases everything; safe to call twice and after a partial setup. */
  close(d: VifDevices): void {
    if (this.port !== 0) {
      try {
        d.ev.unbind(this.port);
      } catch {
        // already gone (the frontend's domain died)
      }
      this.port = 0;
    }
    for (const e of this.memEntries) d.registry.removeMapping(e); // forget first: a death in between leaks, never double-frees
    this.memEntries = [];
    this.ring?.close();
    this.ring = null;
    if (this.map) {
      this.map.unmap();
      if (this.mapEntry >= 0) d.registry.removeMapping(this.mapEntry);
      this.map = null;
    }
  }
}

function reason(e: unknown): string {
  if (e instanceof PlatformError) return e.code.replace(/^GNTST_/, "");
  return e instanceof Error ? e.message : String(e);
}
