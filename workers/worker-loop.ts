// One worker (DESIGN "The worker loop"): the queues it serves, put together from single-purpose
// parts. The event loop (event-loop.ts) waits on the control eventfd, the event-channel device, the
// shared wake eventfd, each queue's own peer fd and the timers (timers.ts), and dispatches to a
// handler per source; the scheduler (queue-scheduler.ts) serves the queues those handlers marked,
// only in the directions that have work, and owns the shared response-and-notify path. This class
// holds the control handler (connect, disconnect, exit from the mailbox) and reports faults and
// carrier changes to the main thread.
import type { WorkerMailbox } from "../src/pool/mailbox.ts";
import type { ToMain, ToWorker, WorkerInit } from "../src/pool/messages.ts";
import { DeviceRegistryWriter, RESOURCE_MEMORY } from "../src/pool/device-registry.ts";
import { workerNative } from "../src/pool/worker-native.ts";
import { openPlatform } from "../src/platform/index.ts";
import type { GrantDevice, Platform } from "../src/platform/types.ts";
import { StatsArena } from "../src/stats/index.ts";
import { WorkerScratch } from "./scratch.ts";
import { ServedQueue, type QueueDevices } from "./served-queue.ts";
import { installPublishHold, PUBLISH_HOLD_ENV } from "./publish-hold.ts";
import { violationCounter } from "./fault-reasons.ts";
import { CaptureWriter } from "./capture-writer.ts";
import { EEXIST, EPROTO, errnoOf } from "./failure-errno.ts";
import { EventLoop, type EventSource } from "./event-loop.ts";
import { Timers } from "./timers.ts";
import { QueueScheduler, type QueueReporter } from "./queue-scheduler.ts";

export class WorkerLoop implements QueueReporter {
  private readonly platform: Platform;
  private readonly devices: QueueDevices;
  private readonly byKey = new Map<string, ServedQueue>();
  private readonly outbox: ToMain[] = [];
  private readonly scratch: WorkerScratch;
  private readonly scratchEntries: number[];
  private readonly timers = new Timers();
  private readonly scheduler: QueueScheduler;
  private readonly loop: EventLoop;
  private exiting = false;
  /** Packet capture (src/capture): this worker's ring, on the batched data path only. */
  private readonly capture: CaptureWriter | null;

  constructor(private readonly init: WorkerInit, private readonly mailbox: WorkerMailbox) {
    const registry = new DeviceRegistryWriter(mailbox.words, init.maxMappings);
    this.platform = openPlatform(init.platform);
    let gnt: GrantDevice;
    try {
      gnt = this.platform.openGrantDevice();
      this.devices = { gnt, ev: this.platform.openEventChannelDevice(), registry, arena: StatsArena.attach(init.stats) };
    } catch (e) {
      this.platform.close();
      throw e;
    }
    const ev = this.devices.ev;
    registry.devices({ grantDevice: gnt.reclaimId, eventChannelDevice: ev.reclaimId });
    this.scratch = new WorkerScratch(init.budget, { scatterGather: init.scatterGather === true && init.datapath !== "seed" });
    // Recorded so the pool frees them if this thread dies (the process lives on).
    this.scratchEntries = this.scratch.allocations().map((a) => registry.addResource(RESOURCE_MEMORY, a));
    installPublishHold(process.env[PUBLISH_HOLD_ENV], init.index);
    this.capture = init.capture && init.datapath !== "seed" ? new CaptureWriter(init.capture) : null;
    this.scheduler = new QueueScheduler(ev, gnt, this.scratch, init.budget, this.timers, this.capture, this);
    const n = workerNative();
    const fixed: EventSource[] = [
      {
        name: "control eventfd",
        fd: init.eventfd,
        ready: () => {
          n.qw_eventfd_drain(init.eventfd);
          this.control();
        },
      },
      { name: "event-channel device", fd: ev.fd, ready: () => this.scheduler.portsFired() },
      {
        name: "shared wake eventfd",
        fd: init.switchWakeFd,
        ready: () => {
          // Cleared before receiving, so a frame enqueued after our receive() re-arms it.
          n.qw_eventfd_drain(init.switchWakeFd);
          for (const q of this.byKey.values()) if (q.peer?.wake === "shared" && !q.disabled) this.scheduler.peerWoke(q);
        },
      },
    ];
    this.loop = new EventLoop(fixed, this.timers);
  }

  /** Runs until told to exit; returns with every queue released and the platform closed. */
  run(): void {
    this.reply({ op: "ready" });
    while (!this.exiting) {
      this.flushOutbox();
      this.loop.turn(this.scheduler.busy);
      if (this.exiting) break;
      this.capture?.refresh();
      this.scheduler.serve();
    }
    for (const q of this.byKey.values()) q.tearDown(this.devices);
    this.byKey.clear();
    for (const e of this.scratchEntries) this.devices.registry.removeMapping(e);
    this.scratch.free();
    this.platform.close();
    this.devices.registry.clear();
  }

  /** The queue sources: each served queue's own peer fd (rebuilt on connect, disconnect and disable: rare). */
  private rebuildQueueSources(): void {
    const sources: EventSource[] = [];
    for (const q of this.byKey.values()) {
      const p = q.peer;
      if (!p || q.disabled || p.wake !== "fd" || p.pollFd < 0) continue;
      sources.push({
        name: `${q.name}'s peer fd`,
        fd: p.pollFd,
        ready: () => this.scheduler.peerWoke(q),
        // The peer went away under us (a TAP's interface deleted): stop polling it, keep the rings.
        broken: (revents) => {
          q.closePeer();
          this.rebuildQueueSources();
          this.event(q, false, `${q.name}: its peer fd is broken (revents 0x${revents.toString(16)}); frames to and from the host are dropped`);
        },
      });
    }
    this.loop.setQueueSources(sources);
  }

  /** Handles every queued control message. */
  private control(): void {
    for (let msg = this.mailbox.receive(); msg; msg = this.mailbox.receive()) {
      if (msg.op === "exit") {
        this.reply({ op: "exiting", seq: msg.seq });
        this.exiting = true;
        return;
      }
      if (msg.op === "settings") this.reply(this.settings(msg));
      else this.reply(msg.op === "connect" ? this.connect(msg) : this.disconnect(msg.seq, msg.key));
    }
  }

  private connect(msg: Extract<ToWorker, { op: "connect" }>): ToMain {
    if (this.byKey.has(msg.spec.key)) return { op: "failed", seq: msg.seq, errno: EEXIST, error: `${msg.spec.name}: key ${msg.spec.key} is already connected on worker ${this.init.index}` };
    const q = new ServedQueue(msg.spec);
    try {
      q.setUp(this.devices, msg.slot, msg.carry, {
        switchAddress: msg.switchAddress,
        switchWakeFd: this.init.switchWakeFd,
        tapIo: this.init.tapIo,
        rxQueueBytes: this.init.rxQueueBytes,
        rxStallMs: this.init.rxStallMs,
        datapath: this.init.datapath,
      });
    } catch (e) {
      return { op: "failed", seq: msg.seq, errno: errnoOf(e), error: (e as Error).message };
    }
    this.byKey.set(q.key, q);
    this.rebuildQueueSources();
    q.peerReady = q.peer?.wake === "shared";
    this.scheduler.add(q, q.name);
    // Taken over from an earlier owner: its last notifications went to a port that was closed under
    // the guest, and responses it had journaled were published at attach. One event on each port
    // makes the frontend look at both rings (a spurious one costs it a ring check).
    if (msg.spec.adopt) {
      this.scheduler.notify(q, q.localTxPort);
      if (q.localRxPort !== q.localTxPort) this.scheduler.notify(q, q.localRxPort);
      if (q.ctrl) this.scheduler.notify(q, q.ctrl.port);
    }
    return { op: "connected", seq: msg.seq, key: q.key, localTxPort: q.localTxPort, localRxPort: q.localRxPort, replayed: q.replayed };
  }

  /** New B/rate or request-multicast-control for a vif's queue (the backend watches both). */
  private settings(msg: Extract<ToWorker, { op: "settings" }>): ToMain {
    const q = this.byKey.get(msg.key);
    // A ring the old rate held back is looked at again under the new one at once.
    if (q && q.applySettings(msg.settings) && !q.disabled) this.scheduler.schedule(q, true, false);
    return { op: "updated", seq: msg.seq, key: msg.key };
  }

  private disconnect(seq: number, key: string): ToMain {
    const q = this.byKey.get(key);
    if (q) {
      this.byKey.delete(key);
      this.scheduler.remove(q);
      q.tearDown(this.devices);
      this.rebuildQueueSources();
    }
    return { op: "disconnected", seq, key };
  }

  carrierChanged(q: ServedQueue, on: boolean): void {
    this.event(
      q,
      on,
      on ? `${q.name}: guest rx ready: carrier on` : `${q.name}: guest rx stalled: no rx buffers posted for ${q.rx.stallMs} ms with frames waiting; carrier off, queue dropped`,
    );
  }

  mcastChanged(q: ServedQueue): void {
    const changes = q.mcast?.changes;
    if (changes?.length) this.reply({ op: "mcast", key: q.key, changes: changes.splice(0) });
  }

  hashChanged(q: ServedQueue): void {
    this.reply({ op: "hash", key: q.key, config: q.hash.snapshot() });
  }

  private event(q: ServedQueue, on: boolean, message: string): void {
    this.reply({ op: "carrier", key: q.key, on, message });
  }

  /** Two-tier guest faults (STYLE 6): stop serving this queue only; the backend tears the vif down. */
  disable(q: ServedQueue, why: string): void {
    q.disabled = true;
    q.counters[violationCounter(why)]++;
    q.counters.carrier = 0;
    q.counters.flush();
    q.closePeer();
    this.rebuildQueueSources();
    this.scheduler.unschedule(q);
    this.reply({ op: "fault", key: q.key, errno: EPROTO, message: why });
  }

  private reply(msg: ToMain): void {
    if (this.outbox.length || !this.mailbox.send(msg)) this.outbox.push(msg);
  }

  private flushOutbox(): void {
    while (this.outbox.length && this.mailbox.send(this.outbox[0])) this.outbox.shift();
  }
}
