// Which queues have work and the one response-and-notify path they share. Handlers (a port fired,
// a peer fd readable, a stall deadline passed) only mark a queue's direction pending and schedule
// it; serve() then runs, per scheduled queue, only the directions that have work: tx (one grant
// copy, one peer send per batch) and rx (one grant copy per receive batch), responses pushed once
// per ring, at most one notify per port; then one write unmasks the ports that fired, and the
// final check re-schedules a queue whose frontend posted meanwhile. Counters flush once per queue.
import type { EventChannelDevice, GrantDevice } from "../src/platform/types.ts";
import { DIR_GUEST_TX } from "../src/capture/capture-ring.ts";
import type { CaptureWriter } from "./capture-writer.ts";
import { RxPath } from "./rx.ts";
import type { ServedQueue } from "./served-queue.ts";
import type { WorkerScratch } from "./scratch.ts";
import type { Timers } from "./timers.ts";

/** Ports read from the event-channel device per wake-up. */
export const PORT_BATCH = 256;
/** Receive batches per queue per wake-up (RX_BATCH frames each) before other queues get their turn. */
const RX_ROUNDS = 4;

/** What the scheduler reports upward (the worker turns these into messages to the main thread). */
/** How soon a skipped counter flush is tried again (a reader holds the slot for microseconds). */
const COUNTER_FLUSH_RETRY_MS = 5;

export interface QueueReporter {
  /** A guest broke the protocol: stop serving this queue only. */
  disable(q: ServedQueue, why: string): void;
  carrierChanged(q: ServedQueue, on: boolean): void;
  /** The control ring changed the vif's hash configuration. */
  hashChanged(q: ServedQueue): void;
  /** A multi-queue vif's queue changed its multicast list. */
  mcastChanged(q: ServedQueue): void;
}

export class QueueScheduler {
  private readonly ready: ServedQueue[] = [];
  /** Queues served in the current serve() (copied so handlers may schedule during it). */
  private serving: ServedQueue[] = [];
  private readonly byPort = new Map<number, ServedQueue>();
  private readonly fired = new Uint32Array(PORT_BATCH);
  private readonly unmaskPorts = new Uint32Array(PORT_BATCH);
  private unmask = 0;

  constructor(
    private readonly ev: EventChannelDevice,
    private readonly gnt: GrantDevice,
    private readonly scratch: WorkerScratch,
    private readonly budget: number,
    private readonly timers: Timers,
    private readonly capture: CaptureWriter | null,
    private readonly report: QueueReporter,
  ) {}

  /** Work is waiting: the loop should only look at its fds, not sleep. */
  get busy(): boolean {
    return this.ready.length > 0;
  }

  /** A newly served queue: its ports routed here, its stall timer created, and served once now. */
  add(q: ServedQueue, name: string): void {
    this.byPort.set(q.localTxPort, q);
    this.byPort.set(q.localRxPort, q);
    if (q.ctrl) this.byPort.set(q.ctrl.port, q); // served on its first wake-up (ctrl.pending)
    q.stallTimer = this.timers.create(`${name} rx stall`, () => this.schedule(q, false, true));
    // A throttled tx ring sleeps until its credit window opens (no busy waiting: tx-credit.ts).
    q.creditTimer = this.timers.create(`${name} tx credit`, (now) => {
      if (q.creditDue(now)) this.schedule(q, true, false);
    });
    q.flushTimer = this.timers.create(`${name} counters`, (now) => this.flushCounters(q, now));
    // Frames a peer on the shared wake got before we looked (its wake may be drained already), and
    // requests posted before we bound, are served now, not at the frontend's next notify.
    this.schedule(q, true, true);
  }

  remove(q: ServedQueue): void {
    this.byPort.delete(q.localTxPort);
    this.byPort.delete(q.localRxPort);
    if (q.ctrl) this.byPort.delete(q.ctrl.port);
    if (q.stallTimer) this.timers.remove(q.stallTimer);
    if (q.creditTimer) this.timers.remove(q.creditTimer);
    if (q.flushTimer) this.timers.remove(q.flushTimer);
    q.stallTimer = q.creditTimer = q.flushTimer = null;
    this.unschedule(q);
  }

  /** Marks a direction pending and puts the queue in the ready list (once). */
  schedule(q: ServedQueue, tx: boolean, rx: boolean): void {
    if (tx) q.txPending = true;
    if (rx) q.rxPending = true;
    if (!q.scheduled) {
      q.scheduled = true;
      this.ready.push(q);
    }
  }

  unschedule(q: ServedQueue): void {
    if (!q.scheduled) return;
    q.scheduled = false;
    q.txPending = q.rxPending = false;
    const at = this.ready.indexOf(q);
    if (at >= 0) this.ready.splice(at, 1);
  }

  /** The peer has frames: rx work for that queue. */
  peerWoke(q: ServedQueue): void {
    q.peerReady = true;
    q.counters.ffi_calls++; // its share of the poll (upper bound when several woke together)
    q.counters.syscalls++;
    this.schedule(q, false, true);
  }

  /**
   * The event-channel device is readable: one read of the fired ports; each marks its queue's
   * direction (a split queue's tx port tx, its rx port rx; a shared port both). The ports are
   * unmasked in serve(), after their queues were served.
   */
  portsFired(): void {
    const n = this.ev.readPending(this.fired);
    for (let i = 0; i < n; i++) {
      const port = this.fired[i];
      const q = this.byPort.get(port);
      if (!q) continue; // unbound since it fired: nothing to do
      // A disabled queue's ports stay masked: a hostile frontend cannot keep waking us.
      if (q.disabled) continue;
      if (this.unmask < PORT_BATCH) this.unmaskPorts[this.unmask++] = port;
      const c = q.counters;
      c.events_received++;
      // Shared costs of this wake-up (poll, read, unmask) are charged to every queue that fired: an
      // upper bound when several queues share one wake-up, exact when they do not.
      c.ffi_calls += 3;
      c.syscalls += 3;
      if (q.ctrl !== null && port === q.ctrl.port) q.ctrl.pending = true;
      this.schedule(q, port === q.localTxPort, port === q.localRxPort);
    }
  }

  /** One wake-up's data work. */
  serve(): void {
    const ready = this.ready;
    if (ready.length === 0) {
      this.flushUnmask();
      return;
    }
    // Taken out of the ready list; a queue with more work goes back in below.
    const served = this.serving;
    served.length = 0;
    for (const q of ready) served.push(q);
    ready.length = 0;
    for (const q of served) {
      q.scheduled = false;
      if (!q.disabled) this.serveQueue(q);
    }
    this.flushUnmask();
    const now = served.length ? performance.now() : 0;
    for (const q of served) {
      if (q.disabled) continue;
      if (!q.txPending && q.peer && q.tx.finalCheck()) this.schedule(q, true, false);
      // The stall deadline follows the rx path's view after this pass.
      const t = q.stallTimer;
      if (t) {
        if (q.rx.stalled) this.timers.arm(t, now + q.rx.stallDueIn(now));
        else if (t.armed) this.timers.disarm(t);
      }
      const ct = q.creditTimer;
      if (ct) {
        const due = q.creditDueIn(now);
        if (due >= 0) this.timers.arm(ct, now + due);
        else if (ct.armed) this.timers.disarm(ct);
      }
      this.flushCounters(q, now);
    }
  }

  /**
   * Publishes the queue's counters. A flush skipped because /vifs was reading the slot (or the main
   * thread held it) loses nothing only if another follows: an idle queue has none, so a skipped one
   * is retried shortly (without it, a queue's last batch before going idle could stay unpublished).
   */
  private flushCounters(q: ServedQueue, now: number): void {
    const c = q.counters;
    if (c.flush() || !c.attached || !q.flushTimer || q.flushTimer.armed) return;
    this.timers.arm(q.flushTimer, now + COUNTER_FLUSH_RETRY_MS);
  }

  private flushUnmask(): void {
    if (this.unmask === 0) return;
    this.ev.unmask(this.unmaskPorts, this.unmask);
    this.unmask = 0;
  }

  private serveQueue(q: ServedQueue): void {
    const c = q.counters;
    const peer = q.peer;
    const s = this.scratch;
    let notifyTx = false;
    let notifyRx = false;
    let moreTx = false;
    let moreRx = false;
    const cw = this.capture;
    const ce = cw !== null && cw.active ? cw.entryFor(c.ref) : -1;
    if (q.txPending) {
      q.txPending = false;
      if (peer) {
        const tx = q.tx.service(this.budget, s, this.gnt, peer, c);
        if (tx.fault) return this.report.disable(q, tx.fault);
        // The batch's frames are still in the scratch: recorded once per batch for a captured queue.
        if (ce >= 0 && tx.packets > 0) cw!.write(ce, DIR_GUEST_TX, s.txFrames.base, s.txFrames.stride, s.txFrames.lens, tx.packets);
        notifyTx = tx.notify;
        moreTx = tx.more;
        if (q.mcast?.changes?.length) this.report.mcastChanged(q);
        if (q.mcast) q.journalMcast();
      }
    }
    if (q.rxPending) {
      q.rxPending = false;
      if (q.rx instanceof RxPath) {
        q.rx.captureEntry = ce;
        q.rx.captureWriter = cw;
      }
      const fromPeer = q.peerReady ? peer : null;
      q.peerReady = false;
      const rx = q.rx.service(fromPeer, RX_ROUNDS, s, this.gnt, c);
      if (rx.fault) return this.report.disable(q, rx.fault);
      notifyRx = rx.notify;
      if (rx.more) {
        moreRx = true;
        if (fromPeer) q.peerReady = true;
      }
      if (rx.carrier) this.report.carrierChanged(q, rx.carrier > 0);
    }
    // The control ring (low rate: a frontend configuring its hash), on its own port.
    let moreCtrl = false;
    if (q.ctrl?.pending) {
      const v0 = q.hash.version;
      const cp = q.ctrl.serve(this.gnt);
      if (q.hash.version !== v0) {
        q.onHashChange();
        this.report.hashChanged(q);
      }
      if (cp.fault) return this.report.disable(q, cp.fault);
      if (cp.notify) this.notify(q, q.ctrl.port);
      if (cp.more) q.ctrl.pending = moreCtrl = true;
    }
    // One event channel for both rings: one notify covers both.
    if (notifyTx || (notifyRx && q.localRxPort === q.localTxPort)) this.notify(q, q.localTxPort);
    if (notifyRx && q.localRxPort !== q.localTxPort) this.notify(q, q.localRxPort);
    if (moreTx || moreRx || moreCtrl) this.schedule(q, moreTx, moreRx);
  }

  /** Never throws: a frontend whose domain died has no port to notify, and that is not our fault. */
  notify(q: ServedQueue, port: number): void {
    const c = q.counters;
    c.ffi_calls++;
    c.syscalls++;
    try {
      this.ev.notify(port);
      c.notifies_sent++;
    } catch {
      // the port is gone (domain destroyed); the backend tears the vif down
    }
  }
}
