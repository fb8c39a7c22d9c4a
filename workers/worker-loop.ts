// One worker's loop (DESIGN "The worker loop"): a blocking poll() over the control eventfd, the
// event-channel device, the worker's shared wake eventfd and every peer fd of its own, nothing else
// running, so an idle worker costs ~0 % CPU. Per wake-up: control messages; one read of the fired
// ports; each ready vif served up to its budget (tx: one grant copy, one peer send; rx: one grant
// copy per receive batch), responses pushed once per ring, one notify per port; one write to
// unmask the ports; the final check for requests; counters flushed once per vif; sleep (or poll
// again at once if a vif still has work, or until the nearest rx-stall deadline).
import type { WorkerMailbox } from "../src/pool/mailbox.ts";
import type { ToMain, ToWorker, WorkerInit } from "../src/pool/messages.ts";
import { DeviceRegistryWriter, RESOURCE_MEMORY } from "../src/pool/device-registry.ts";
import { POLL_MAX_FDS, POLLERR, POLLHUP, POLLNVAL, workerNative } from "../src/pool/worker-native.ts";
import { openPlatform } from "../src/platform/index.ts";
import type { EventChannelDevice, GrantDevice, Platform } from "../src/platform/types.ts";
import { StatsArena } from "../src/stats/index.ts";
import { WorkerScratch } from "./scratch.ts";
import { ServedVif, type VifDevices } from "./served-vif.ts";
import { installPublishHold, PUBLISH_HOLD_ENV } from "./publish-hold.ts";
import { violationCounter } from "./fault-reasons.ts";
import { CaptureWriter } from "./capture-writer.ts";
import { DIR_GUEST_TX } from "../src/capture/capture-ring.ts";
import { RxPath } from "./rx.ts";
import { TxPath } from "./tx.ts";
import { EEXIST, EPROTO, errnoOf } from "./failure-errno.ts";

const PORT_BATCH = 256;
/** Receive batches per vif per wake-up (RX_BATCH frames each) before other vifs get their turn. */
const RX_ROUNDS = 4;
/** Fixed poll slots: control eventfd, event-channel device, the shared wake eventfd; peers' own fds follow. */
const FIXED_FDS = 3;
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
  private readonly fds = new Int32Array(POLL_MAX_FDS);
  private readonly revents = new Int32Array(POLL_MAX_FDS);
  private nfds = FIXED_FDS;
  /** Bumped when the peer slots change: revents from a poll() over the old set must not be read against the new one. */
  private pollSetVersion = 0;
  /** The vif whose peer's own fd sits at poll slot i (FIXED_FDS and up). */
  private pollVifs: (ServedVif | null)[] = [];
  private readonly switchWakeFd: number;
  private readonly scratch: WorkerScratch;
  private readonly scratchEntries: number[];
  private readonly fired = new Uint32Array(PORT_BATCH);
  private readonly unmaskPorts = new Uint32Array(PORT_BATCH);
  /** Packet capture (src/capture): this worker's ring, on the batched data path only. */
  private readonly capture: CaptureWriter | null;

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
    registry.devices({ grantDevice: gnt.reclaimId, eventChannelDevice: this.ev.reclaimId });
    this.devices = { gnt, ev: this.ev, registry, arena: StatsArena.attach(init.stats) };
    const wfd = init.switchWakeFd;
    this.switchWakeFd = wfd;
    this.scratch = new WorkerScratch(init.budget, { scatterGather: init.scatterGather === true && init.datapath !== "seed" });
    // Recorded so the pool frees them if this thread dies (the process lives on).
    this.scratchEntries = this.scratch.allocations().map((a) => registry.addResource(RESOURCE_MEMORY, a));
    installPublishHold(process.env[PUBLISH_HOLD_ENV], init.index);
    this.fds[0] = init.eventfd;
    this.fds[1] = this.ev.fd;
    this.fds[2] = wfd;
    this.capture = init.capture && init.datapath !== "seed" ? new CaptureWriter(init.capture) : null;
  }

  /** Rebuilds the poll set's peer slots (on connect, disconnect and disable: rare). */
  private rebuildPollSet(): void {
    this.pollVifs = [];
    let n = FIXED_FDS;
    for (const vif of this.byKey.values()) {
      const p = vif.peer;
      if (!p || vif.disabled || p.wake !== "fd" || p.pollFd < 0) continue;
      if (n >= POLL_MAX_FDS) break; // more peer fds than poll slots: the pool never places that many
      this.fds[n] = p.pollFd;
      this.pollVifs[n] = vif;
      n++;
    }
    this.nfds = n;
    this.pollSetVersion++;
  }

  /** Runs until told to exit; returns with every vif released and the platform closed. */
  run(): void {
    const n = workerNative();
    this.reply({ op: "ready" });
    for (;;) {
      this.flushOutbox();
      const rc = n.qw_poll(this.fds, this.revents, this.nfds, this.ready.length ? 0 : this.stallTimeout());
      const polled = this.pollSetVersion;
      if (rc < 0) throw new Error(`poll failed (errno ${-rc})`);
      // A broken fd would make poll() return at once forever: die instead (the pool moves our vifs).
      for (let i = 0; i < FIXED_FDS; i++)
        if (this.revents[i] & BROKEN) throw new Error(`${["control eventfd", "event-channel device", "shared wake eventfd"][i]} is broken (revents 0x${this.revents[i].toString(16)})`);
      if (this.revents[0]) {
        n.qw_eventfd_drain(this.init.eventfd);
        if (!this.control()) break;
      }
      if (this.revents[2]) {
        // Cleared before receiving, so a frame enqueued after our receive() re-arms it.
        n.qw_eventfd_drain(this.switchWakeFd);
        for (const vif of this.byKey.values()) if (vif.peer?.wake === "shared" && !vif.disabled) this.peerWoke(vif);
      }
      // A connect or disconnect just changed the peer slots: these revents describe the old set. poll()
      // is level-triggered, so a peer fd with frames is reported again on the next round.
      for (let i = FIXED_FDS; i < this.nfds && polled === this.pollSetVersion; i++) {
        const r = this.revents[i];
        if (!r) continue;
        const vif = this.pollVifs[i]!;
        if (r & BROKEN) {
          // The peer went away under us (a TAP's interface deleted): stop polling it, keep the vif's rings.
          vif.closePeer();
          this.rebuildPollSet();
          this.event(vif, false, `${vif.name}: its peer fd is broken (revents 0x${r.toString(16)}); frames to and from the host are dropped`);
          break;
        }
        this.peerWoke(vif);
      }
      // Not only on a timeout: with other fds busy, poll() may never time out past a deadline.
      this.dueStalls();
      this.capture?.refresh();
      this.serve(this.revents[1] ? this.ev.readPending(this.fired) : 0);
    }
    for (const vif of this.byKey.values()) vif.tearDown(this.devices);
    this.byKey.clear();
    this.byPort.clear();
    for (const e of this.scratchEntries) this.devices.registry.removeMapping(e);
    this.scratch.free();
    this.platform.close();
    this.devices.registry.clear();
  }

  private peerWoke(vif: ServedVif): void {
    vif.peerReady = true;
    vif.counters.ffi_calls++; // its share of the poll (upper bound when several woke together)
    vif.counters.syscalls++;
    if (!this.ready.includes(vif)) this.ready.push(vif);
  }

  /** Poll timeout: until the nearest rx-stall deadline or rate-limit credit timer, or forever. */
  private stallTimeout(): number {
    let due = -1;
    const now = performance.now();
    for (const vif of this.byKey.values()) {
      if (vif.disabled) continue;
      if (vif.rx.stalled) {
        const t = Math.ceil(vif.rx.stallDueIn(now));
        if (due < 0 || t < due) due = t;
      }
      // A throttled tx ring sleeps until its credit window opens (no busy waiting: tx-credit.ts).
      const c = vif.tx instanceof TxPath ? vif.tx.credit.timerDueIn(now) : -1;
      if (c >= 0 && (due < 0 || Math.ceil(c) < due)) due = Math.ceil(c);
    }
    return due;
  }

  /** Vifs whose rx stall deadline or tx credit timer passed are served. A few property reads per vif. */
  private dueStalls(): void {
    let now = -1;
    for (const vif of this.byKey.values()) {
      if (vif.disabled) continue;
      const throttled = vif.tx instanceof TxPath && vif.tx.credit.throttled;
      if (!vif.rx.stalled && !throttled) continue;
      if (now < 0) now = performance.now();
      const due = (vif.rx.stalled && vif.rx.stallDueIn(now) === 0) || (throttled && (vif.tx as TxPath).credit.due(now));
      if (due && !this.ready.includes(vif)) this.ready.push(vif);
    }
  }

  /** Handles every queued control message; false on exit. */
  private control(): boolean {
    for (let msg = this.mailbox.receive(); msg; msg = this.mailbox.receive()) {
      if (msg.op === "exit") {
        this.reply({ op: "exiting", seq: msg.seq });
        return false;
      }
      if (msg.op === "settings") this.reply(this.settings(msg));
      else this.reply(msg.op === "connect" ? this.connect(msg) : this.disconnect(msg.seq, msg.key));
    }
    return true;
  }

  private connect(msg: Extract<ToWorker, { op: "connect" }>): ToMain {
    if (this.byKey.has(msg.spec.key)) return { op: "failed", seq: msg.seq, errno: EEXIST, error: `${msg.spec.name}: key ${msg.spec.key} is already connected on worker ${this.init.index}` };
    const vif = new ServedVif(msg.spec);
    try {
      vif.setUp(this.devices, msg.slot, msg.carry, {
        switchAddress: msg.switchAddress,
        switchWakeFd: this.switchWakeFd,
        tapIo: this.init.tapIo,
        rxQueueBytes: this.init.rxQueueBytes,
        rxStallMs: this.init.rxStallMs,
        datapath: this.init.datapath,
      });
    } catch (e) {
      return { op: "failed", seq: msg.seq, errno: errnoOf(e), error: (e as Error).message };
    }
    this.byKey.set(vif.key, vif);
    this.byPort.set(vif.localTxPort, vif);
    this.byPort.set(vif.localRxPort, vif);
    this.rebuildPollSet();
    // Frames a peer on the shared wake got before we looked (its wake may be drained already), and
    // requests posted before we bound, are served now, not at the frontend's next notify.
    vif.peerReady = vif.peer?.wake === "shared";
    this.ready.push(vif);
    // Taken over from an earlier owner: its last notifications went to a port that was closed under
    // the guest, and responses it had journaled were published at attach. One event on each port
    // makes the frontend look at both rings (a spurious one costs it a ring check).
    if (msg.spec.adopt) {
      this.notify(vif, vif.localTxPort);
      if (vif.localRxPort !== vif.localTxPort) this.notify(vif, vif.localRxPort);
    }
    return { op: "connected", seq: msg.seq, key: vif.key, localTxPort: vif.localTxPort, localRxPort: vif.localRxPort, replayed: vif.replayed };
  }

  /** New B/rate or request-multicast-control for a vif (the backend watches both). */
  private settings(msg: Extract<ToWorker, { op: "settings" }>): ToMain {
    const vif = this.byKey.get(msg.key);
    if (vif && vif.applySettings(msg.settings) && !vif.disabled && !this.ready.includes(vif)) this.ready.push(vif);
    return { op: "updated", seq: msg.seq, key: msg.key };
  }

  private disconnect(seq: number, key: string): ToMain {
    const vif = this.byKey.get(key);
    if (vif) {
      this.byKey.delete(key);
      this.byPort.delete(vif.localTxPort);
      this.byPort.delete(vif.localRxPort);
      this.ready = this.ready.filter((v) => v !== vif);
      vif.tearDown(this.devices);
      this.rebuildPollSet();
    }
    return { op: "disconnected", seq, key };
  }

  /** One wake-up's data work for `nfired` ports read into this.fired. */
  private serve(nfired: number): void {
    const fired = this.fired;
    const ready = this.ready;
    let unmask = 0;
    for (let i = 0; i < nfired; i++) {
      const vif = this.byPort.get(fired[i]);
      if (!vif) continue; // unbound since it fired: nothing to do
      // A disabled vif's ports stay masked: a hostile frontend cannot keep waking us.
      if (vif.disabled) continue;
      this.unmaskPorts[unmask++] = fired[i];
      const c = vif.counters;
      c.events_received++;
      // Shared costs of this wake-up (poll, read, unmask) are charged to every vif that fired: an
      // upper bound when several vifs share one wake-up, exact when they do not.
      c.ffi_calls += 3;
      c.syscalls += 3;
      if (!ready.includes(vif)) ready.push(vif);
    }
    if (ready.length === 0) {
      if (unmask) this.ev.unmask(this.unmaskPorts, unmask);
      return;
    }
    const served = ready.slice();
    const s = this.scratch;
    const gnt = this.devices.gnt;
    for (const vif of served) {
      if (vif.disabled) continue;
      const c = vif.counters;
      const peer = vif.peer;
      let more = false;
      let notifyTx = false;
      let notifyRx = false;
      const cw = this.capture;
      const ce = cw !== null && cw.active ? cw.entryFor(vif.counters.ref) : -1;
      if (vif.rx instanceof RxPath) {
        vif.rx.captureEntry = ce;
        vif.rx.captureWriter = cw;
      }
      if (peer) {
        const tx = vif.tx.service(this.init.budget, s, gnt, peer, c);
        if (tx.fault) {
          this.disable(vif, tx.fault);
          continue;
        }
        // The batch's frames are still in the scratch: recorded once per batch for a captured vif.
        if (ce >= 0 && tx.packets > 0) cw!.write(ce, DIR_GUEST_TX, s.txFrames.base, s.txFrames.stride, s.txFrames.lens, tx.packets);
        notifyTx = tx.notify;
        more = tx.more;
      }
      const fromPeer = vif.peerReady ? peer : null;
      vif.peerReady = false;
      const rx = vif.rx.service(fromPeer, RX_ROUNDS, s, gnt, c);
      if (rx.fault) {
        this.disable(vif, rx.fault);
        continue;
      }
      notifyRx = rx.notify;
      if (rx.more) {
        more = true;
        if (fromPeer) vif.peerReady = true;
      }
      if (rx.carrier) this.carrierChanged(vif, rx.carrier > 0);
      // One event channel for both rings: one notify covers both.
      if (notifyTx || (notifyRx && vif.localRxPort === vif.localTxPort)) this.notify(vif, vif.localTxPort);
      if (notifyRx && vif.localRxPort !== vif.localTxPort) this.notify(vif, vif.localRxPort);
      if (!more) {
        const at = ready.indexOf(vif);
        if (at >= 0) ready.splice(at, 1);
      }
    }
    if (unmask) this.ev.unmask(this.unmaskPorts, unmask);
    for (const vif of served) {
      if (!vif.disabled && vif.peer && !ready.includes(vif) && vif.tx.finalCheck()) ready.push(vif);
      vif.counters.flush();
    }
  }

  /** Never throws: a frontend whose domain died has no port to notify, and that is not our fault. */
  private notify(vif: ServedVif, port: number): void {
    const c = vif.counters;
    c.ffi_calls++;
    c.syscalls++;
    try {
      this.ev.notify(port);
      c.notifies_sent++;
    } catch {
      // the port is gone (domain destroyed); the backend tears the vif down
    }
  }

  private carrierChanged(vif: ServedVif, on: boolean): void {
    this.event(
      vif,
      on,
      on ? `${vif.name}: guest rx ready: carrier on` : `${vif.name}: guest rx stalled: no rx buffers posted for ${vif.rx.stallMs} ms with frames waiting; carrier off, queue dropped`,
    );
  }

  private event(vif: ServedVif, on: boolean, message: string): void {
    this.reply({ op: "carrier", key: vif.key, on, message });
  }

  /** Two-tier guest faults (STYLE 6): stop serving this vif only; the backend tears it down. */
  private disable(vif: ServedVif, why: string): void {
    vif.disabled = true;
    vif.counters[violationCounter(why)]++;
    vif.counters.carrier = 0;
    vif.counters.flush();
    vif.closePeer();
    this.rebuildPollSet();
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
