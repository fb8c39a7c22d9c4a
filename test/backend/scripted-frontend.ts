// Plays a guest's netfront over the guest's own xenstore socket, the way Linux xen-netfront does
// (XEN-FACTS section 3): waits for the backend's InitWait, checks feature-rx-copy, writes its
// rings and event channel in one transaction, then goes straight to Connected. Tests also use it
// to write anything a hostile guest could.
import { XenbusState } from "../../src/xen/xenbus-state.ts";
import type { XenstoreClient } from "../../src/xenstore/index.ts";
import { until } from "./sim-host.ts";

/**
 * Linux netfront's keys for `n` queues with split event channels (write_queue_xenstore_keys), the
 * top-level ring keys of a single-queue frontend removed, as netfront leaves them absent.
 */
export function queueNodes(n: number): Record<string, string | null> {
  const extra: Record<string, string | null> = { "multi-queue-num-queues": String(n), "tx-ring-ref": null, "rx-ring-ref": null, "event-channel": null };
  for (let q = 0; q < n; q++) {
    extra[`queue-${q}/tx-ring-ref`] = String(200 + 2 * q);
    extra[`queue-${q}/rx-ring-ref`] = String(201 + 2 * q);
    extra[`queue-${q}/event-channel-tx`] = String(30 + 2 * q);
    extra[`queue-${q}/event-channel-rx`] = String(31 + 2 * q);
  }
  return extra;
}

export interface RingNodes {
  txRingRef?: string;
  rxRingRef?: string;
  evtchn?: string;
  /** Writes event-channel-tx/-rx instead of event-channel. */
  split?: { tx: string; rx: string };
  requestRxCopy?: string | null;
  /** Extra nodes (e.g. multi-queue-num-queues), or null to delete one. */
  extra?: Record<string, string | null>;
}

export class ScriptedFrontend {
  readonly F: string;
  readonly B: string;
  constructor(
    readonly xs: XenstoreClient,
    readonly domid: number,
    readonly devid: number,
    backendType = "vif",
    backendDomid = 0,
  ) {
    this.F = `/local/domain/${domid}/device/vif/${devid}`;
    this.B = `/local/domain/${backendDomid}/backend/${backendType}/${domid}/${devid}`;
  }

  setState(s: number): Promise<void> {
    return this.xs.write(`${this.F}/state`, String(s));
  }

  async backendState(): Promise<number | undefined> {
    const v = await this.xs.tryRead(`${this.B}/state`);
    return v === undefined ? undefined : Number(v);
  }

  async waitBackend(state: number, ms = 5000): Promise<void> {
    await until(`${this.B}/state = ${state}`, async () => (await this.backendState()) === state, ms);
  }

  /** Linux netfront's talk_to_netback: one transaction with everything (defaults are valid values). */
  async writeRings(n: RingNodes = {}): Promise<void> {
    await this.xs.transaction(async (t) => {
      const w = (k: string, v: string | null | undefined) => (v === null ? t.rm(`${this.F}/${k}`).catch(() => {}) : v === undefined ? undefined : t.write(`${this.F}/${k}`, v));
      await w("tx-ring-ref", n.txRingRef ?? "8");
      await w("rx-ring-ref", n.rxRingRef ?? "9");
      if (n.split) {
        await w("event-channel-tx", n.split.tx);
        await w("event-channel-rx", n.split.rx);
      } else await w("event-channel", n.evtchn ?? "5");
      await w("request-rx-copy", n.requestRxCopy === undefined ? "1" : n.requestRxCopy);
      for (const k of ["feature-rx-notify", "feature-sg", "feature-gso-tcpv4", "feature-gso-tcpv6", "feature-ipv6-csum-offload"]) await w(k, "1");
      for (const [k, v] of Object.entries(n.extra ?? {})) await w(k, v);
    });
  }

  /** The whole netfront handshake: InitWait seen, rx-copy offered, rings written, Connected. */
  async connect(n: RingNodes = {}): Promise<void> {
    await this.waitBackend(XenbusState.InitWait);
    if ((await this.xs.tryRead(`${this.B}/feature-rx-copy`)) !== "1") throw new Error("backend does not offer feature-rx-copy");
    await this.writeRings(n);
    await this.setState(XenbusState.Connected);
  }
}
