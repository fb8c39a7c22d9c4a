// One worker's loop (DESIGN "The worker loop"): a blocking poll() over the control eventfd and the
// event-channel device, nothing else running, so an idle worker costs ~0 % CPU. Per wake-up:
// control messages; one read of the fired ports; each ready vif served up to its budget, responses
// pushed once, one notify per ring; one write to unmask the ports; the final check for requests;
// counters flushed once per vif; sleep (or poll again at once if a vif still has work).
import type { WorkerMailbox } from "../src/pool/mailbox.ts";
import type { ToMain, ToWorker, WorkerInit } from "../src/pool/messages.ts";
import { DEVICES_SIM, DEVICES_XEN, DeviceRegistryWriter } from "../src/pool/device-registry.ts";
import { POLLERR, POLLHUP, POLLNVAL, workerNative } from "../src/pool/worker-native.ts";
import { openPlatform } from "../src/platform/index.ts";
import type { EventChannelDevice, GrantDevice, Platform } from "../src/platform/types.ts";
import { StatsArena } from "../src/stats/index.ts";
import { ServedVif, type VifDevices } from "./served-vif.ts";

/** EPROTO: what netback writes for a frontend that broke the ring protocol. */
const EPROTO = 71;
const PORT_BATCH = 256;
/** poll() revents that no eventfd or event-channel device reports while healthy. */
const BROKEN = POLLERR | POLLHUP | POLLNVAL;

export class WorkerLoop {
  private readonly platform: Platform;
  private readonly devices: VifDevices;
  private readonly ev: EventChannelDevice;
  private readonly byKey = new Map<string, ServedVif>();
  private readonly byPort = new Map<number, ServedVif>();
  private ready: ServedVif[] = [];
  private readonly outbox: ToMain[] = [];
  // Arguments of the FFI calls that write them (BUN-FACTS pitfall 1), kept for the worker's life (pitfall 2).
  private readonly fds: Int32Array;
  private readonly revents = new Int32Array(2);
  private readonly fired = new Uint32Array(PORT_BATCH);
  private readonly unmaskPorts = new Uint32Array(PORT_BATCH);

  constructor(private readonly init: WorkerInit, private readonly mailbox: WorkerMailbox) {
    const registry = new DeviceRegistryWriter(mailbox.words, init.maxMappings);
    this.platform = openPlatform(init.platform);
    let gnt: GrantDevice;
    try {
      gnt = this.platform.openGrantDevice();
      this.ev = this.platform.openEventChannelDevice();
    } catch (e) {
      this.platform.close();
      throw e;
    }
    registry.devices(this.platform.kind === "sim" ? DEVICES_SIM : DEVICES_XEN, {
      // The sim devices' handles are private to them; the seam has no accessor yet (see reclaim.ts).
      evtchnHandle: (this.ev as unknown as { handle?: number }).handle ?? -1,
      gntdevHandle: (gnt as unknown as { handle?: number }).handle ?? -1,
      evtchnFd: this.ev.fd,
      gntdevFd: (gnt as unknown as { fd?: number }).fd ?? -1,
    });
    this.devices = { gnt, ev: this.ev, registry, arena: StatsArena.attach(init.stats) };
    this.fds = new Int32Array([init.eventfd, this.ev.fd]);
  }

  /** Runs until told to exit; returns with every vif released and the platform closed. */
  run(): void {
    const n = workerNative();
    this.reply({ op: "ready" });
    for (;;) {
      this.flushOutbox();
      const rc = n.qw_poll(this.fds, this.revents, 2, this.ready.length ? 0 : -1);
      if (rc < 0) throw new Error(`poll failed (errno ${-rc})`);
      // A broken fd would make poll() return at once forever: die instead (the pool moves our vifs).
      if ((this.revents[0] | this.revents[1]) & BROKEN)
        throw new Error(`${this.revents[0] & BROKEN ? "control eventfd" : "event-channel device"} is broken (revents 0x${(this.revents[0] | this.revents[1]).toString(16)})`);
      if (this.revents[0]) {
        n.qw_eventfd_drain(this.init.eventfd);
        if (!this.control()) break;
      }
      this.serve(this.revents[1] ? this.ev.readPending(this.fired) : 0);
    }
    for (const vif of this.byKey.values()) vif.tearDown(this.devices);
    this.byKey.clear();
    this.byPort.clear();
    this.platform.close();
    this.devices.registry.clear();
  }

  /** Handles every queued control message; false on exit. */
  private control(): boolean {
    for (let msg = this.mailbox.receive(); msg; msg = this.mailbox.receive()) {
      if (msg.op === "exit") {
        this.reply({ op: "exiting", seq: msg.seq });
        return false;
      }
      this.reply(msg.op === "connect" ? this.connect(msg) : this.disconnect(msg.seq, msg.key));
    }
    return true;
  }

  private connect(msg: Extract<ToWorker, { op: "connect" }>): ToMain {
    if (this.byKey.has(msg.spec.key)) return { op: "failed", seq: msg.seq, error: `${msg.spec.name}: key ${msg.spec.key} is already connected on worker ${this.init.index}` };
    const vif = new ServedVif(msg.spec);
    try {
      vif.setUp(this.devices, msg.slot, msg.carry);
    } catch (e) {
      return { op: "failed", seq: msg.seq, error: (e as Error).message };
    }
    this.byKey.set(vif.key, vif);
    this.byPort.set(vif.localTxPort, vif);
    this.byPort.set(vif.localRxPort, vif);
    // Requests posted before we bound are served now, not at the frontend's next notify.
    this.ready.push(vif);
    return { op: "connected", seq: msg.seq, key: vif.key, localTxPort: vif.localTxPort, localRxPort: vif.localRxPort };
  }

  private disconnect(seq: number, key: string): ToMain {
    const vif = this.byKey.get(key);
    if (vif) {
      this.byKey.delete(key);
      this.byPort.delete(vif.localTxPort);
      this.byPort.delete(vif.localRxPort);
      this.ready = this.ready.filter((v) => v !== vif);
      vif.tearDown(this.devices);
    }
    return { op: "disconnected", seq, key };
  }

  /** One wake-up's data work for `nfired` ports read into this.fired. */
  private serve(nfired: number): void {
    const fired = this.fired;
    const ready = this.ready;
    const woke = new Set<ServedVif>();
    let unmask = 0;
    for (let i = 0; i < nfired; i++) {
      const vif = this.byPort.get(fired[i]);
      if (!vif) continue; // unbound since it fired: nothing to do
      // A disabled vif's ports stay masked: a hostile frontend cannot keep waking us.
      if (vif.disabled) continue;
      this.unmaskPorts[unmask++] = fired[i];
      vif.counters.events_received++;
      woke.add(vif);
      if (!ready.includes(vif)) ready.push(vif);
    }
    if (ready.length === 0) {
      if (unmask) this.ev.unmask(this.unmaskPorts, unmask);
      return;
    }
    // Shared costs of this wake-up (poll, read, unmask) are charged to every vif that fired: an
    // upper bound when several vifs share one wake-up, exact when they do not.
    for (const vif of woke) {
      vif.counters.ffi_calls += 3;
      vif.counters.syscalls += 3;
    }
    const served = ready.slice();
    for (const vif of served) {
      const pass = vif.tx.service(this.init.budget);
      const c = vif.counters;
      if (pass.packets) {
        c.tx_batches++;
        c.tx_drops += pass.packets; // the null peer: accepted, answered, dropped
      }
      if (pass.notify) {
        this.ev.notify(vif.localTxPort);
        c.notifies_sent++;
        c.ffi_calls++;
        c.syscalls++;
      }
      if (pass.fault) this.disable(vif, pass.fault);
      else if (!pass.more) ready.splice(ready.indexOf(vif), 1);
    }
    if (unmask) this.ev.unmask(this.unmaskPorts, unmask);
    for (const vif of served) {
      if (!vif.disabled && !ready.includes(vif) && vif.tx.finalCheck()) ready.push(vif);
      vif.counters.flush();
    }
  }

  /** Two-tier guest faults (STYLE 6): stop serving this vif only; the backend tears it down. */
  private disable(vif: ServedVif, why: string): void {
    vif.disabled = true;
    vif.counters.carrier = 0;
    const at = this.ready.indexOf(vif);
    if (at >= 0) this.ready.splice(at, 1);
    this.reply({ op: "fault", key: vif.key, errno: EPROTO, message: why });
  }

  private reply(msg: ToMain): void {
    if (this.outbox.length || !this.mailbox.send(msg)) this.outbox.push(msg);
  }

  private flushOutbox(): void {
    while (this.outbox.length && this.mailbox.send(this.outbox[0])) this.outbox.shift();
  }
}
