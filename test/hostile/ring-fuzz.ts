// The ring fuzzer: a seeded, deterministic hostile frontend against the real worker pool on the
// simulated host. Each step it writes random but structurally plausible tx packets (single and
// multi-slot, extras, zero-length fragments, runts, bad and foreign grants, now and then a protocol
// violation), rx requests (good, read-only and bad grants), extra event-channel kicks and storms,
// on two fuzzed vifs (one with SG/GSO on the null peer, one plain on the switch, which also gets
// rx traffic), while two well-behaved neighbours forward through the switch on the same worker.
//
// After every step it checks, from the guest's side only:
//  - nothing escaped the data path: no worker lost, no fault but the ones the step provoked;
//  - every consumed request is answered exactly once, in its slot, with the status the request
//    deserves (OKAY, ERROR, NULL for extras; rx: the frame length at offset 2, or ERROR);
//  - every grant copy the backend made (the sim's grant-access audit) is one of a consumed request's
//    own bytes, each non-empty slot of a copied packet exactly once, rx buffers in request order;
//  - a violation disables that vif alone, with the expected message, having answered exactly the
//    packets before it; the vif is then replaced by a fresh guest;
//  - the neighbours lose nothing; queues stay within their bytes and the process's RSS is bounded.
// Ring operations counted: request slots written (tx + rx) and event-channel kicks.
import { createLogger } from "../../src/log.ts";
import { createWorkerPool, type Pool, type VifFault } from "../../src/pool/index.ts";
import { createDomain, destroyDomain, openGrantAudit, AuditOp, type GrantAudit } from "../../src/sim/hypervisor/index.ts";
import { readVifStats, StatsArena, type SlotRef } from "../../src/stats/index.ts";
import {
  NETIF_RSP_ERROR,
  NETIF_RSP_NULL,
  NETIF_RSP_OKAY,
  NETTXF_csum_blank,
  NETTXF_extra_info,
  NETTXF_more_data,
  XEN_NETIF_EXTRA_FLAG_MORE,
} from "../../src/xen/netif.ts";
import { freshHost } from "../sim/hypervisor/helpers.ts";
import { drainRx, FakeFrontend, frames, macOf } from "../pool/fake-frontend.ts";

export interface FuzzOptions {
  seed: number;
  /** Stop once this many ring operations were written. */
  ops: number;
  /** Progress lines (a line per 1000 steps). */
  log?: (line: string) => void;
}

export interface FuzzReport {
  seed: number;
  ops: number;
  steps: number;
  txSlots: number;
  rxSlots: number;
  kicks: number;
  /** Protocol violations provoked (and answered by disabling the vif), by kind. */
  violations: Record<string, number>;
  copiesChecked: number;
  neighbourFrames: number;
  seconds: number;
  rssGrowthMiB: number;
}

/** A broken invariant: says which, at which step, and how to replay it. */
export class FuzzFailure extends Error {
  override name = "FuzzFailure";
}

const RX_QUEUE_BYTES = 64 * 1024;
const RSS_BOUND_MIB = 192;
const STEP_LIMIT_MS = 10_000;

/** xorshift32: small, fast, and the same sequence on every machine. */
class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 0x9e3779b9;
    for (let i = 0; i < 8; i++) this.next();
  }
  next(): number {
    let x = this.s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (this.s = x >>> 0);
  }
  /** 0..n-1 */
  int(n: number): number {
    return this.next() % n;
  }
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  chance(p: number): boolean {
    return this.next() / 4294967296 < p;
  }
}

interface Slot {
  gref: number;
  offset: number;
  flags: number;
  id: number;
  /** The size field as written (the whole packet's for a first slot). */
  size: number;
  /** Extra-info slot (gref/offset/flags/size then carry struct netif_extra_info). */
  extra: boolean;
  /** The bytes this slot itself carries (what a grant copy of it may move). */
  own: number;
}

interface Packet {
  slots: Slot[];
  /** What every data slot must be answered: OKAY or ERROR. */
  status: number;
  /** Its non-empty slots are grant-copied (a structurally sound packet the path takes in). */
  copied: boolean;
  /** A protocol violation: the vif must be disabled with this message, this packet unanswered. */
  violation?: { kind: string; message: RegExp };
  /**
   * The packet carried an MCAST_ADD / MCAST_DEL extra on a vif that negotiated extras: netback
   * answers it as a multicast-control request (first slot: the list's verdict; fragments ERROR;
   * nothing copied). Decided when it is posted, against the vif's list as the backend keeps it.
   */
  mcast?: { op: "add" | "del"; addr: string };
}

/** What the fuzzer expects of one posted tx slot until its response is read. */
interface TxExpect {
  id: number;
  extra: boolean;
  status: number;
}

/** A tx slot whose grant the backend may copy once answered. */
interface CopySlot {
  idx: number;
  offset: number;
  own: number;
  mustCopy: boolean;
  copied: boolean;
}

const VIOLATIONS_SG = ["cross-page", "slots", "frag-size", "frag-page", "extra-type", "gso-size", "gso-type", "past-prod", "tx-prod", "rx-prod"] as const;
const VIOLATIONS_PLAIN = ["cross-page", "slots", "extra-type", "past-prod", "tx-prod", "rx-prod"] as const;

class FuzzVif {
  fe!: FakeFrontend;
  audit!: GrantAudit;
  key = "";
  generation = 0;
  slot: SlotRef | null = null;
  txIdx = 0; // our req_prod (FakeFrontend keeps the same count)
  txSeen = 0;
  readonly txExpect: TxExpect[] = Array.from({ length: 256 }, () => ({ id: 0, extra: false, status: 0 }));
  /** By gref: the last slot that named it (grefs are unique among outstanding slots). */
  readonly copySlots = new Map<number, CopySlot>();
  /** Slots answered since the last check whose copy is due. */
  readonly answered: CopySlot[] = [];
  rxIdx = 0;
  rxSeen = 0;
  rxCopied = 0;
  readonly rxPosted: { id: number; gref: number; good: boolean }[] = Array.from({ length: 256 }, () => ({ id: 0, gref: 0, good: false }));
  /** The multicast list as the backend keeps it (workers/mcast-filter.ts: 64 at most, duplicates kept). */
  readonly mcast: string[] = [];
  /** A violation posted this step: the fault to expect and where answering must stop. */
  violation: { kind: string; message: RegExp; at: number } | null = null;
  // Grant pools (rotating: a gref is reused only long after its slot was answered).
  goodTx: number[] = [];
  foreignTx: number[] = [];
  goodRx: number[] = [];
  readonlyRx: number[] = [];
  private cursor = { goodTx: 0, foreignTx: 0, goodRx: 0, readonlyRx: 0, never: 0, beyond: 0 };

  constructor(
    readonly name: string,
    readonly sg: boolean,
    readonly peer: "null" | "switch",
    readonly mac: Uint8Array,
  ) {}

  async connect(dir: string, pool: Pool): Promise<void> {
    const domid = createDomain(dir, { memoryPages: 256 });
    this.fe = new FakeFrontend(dir, domid);
    const g = this.fe.guest;
    this.audit = openGrantAudit(dir, domid);
    this.audit.enable();
    const txFrames = Array.from({ length: 16 }, () => g.allocPage());
    this.goodTx = Array.from({ length: 640 }, (_, i) => g.grantAccess(0, txFrames[i % 16]!, true));
    const foreignFrame = g.allocPage();
    this.foreignTx = Array.from({ length: 320 }, () => g.grantAccess(domid + 60, foreignFrame, true));
    const rxFrames = Array.from({ length: 16 }, () => g.allocPage());
    this.goodRx = Array.from({ length: 640 }, (_, i) => g.grantAccess(0, rxFrames[i % 16]!, false));
    this.readonlyRx = Array.from({ length: 320 }, (_, i) => g.grantAccess(0, rxFrames[i % 16]!, true));
    for (const f of txFrames) g.pageView(f).set(frames(this.mac, 1, f, () => 4096)[0]!.fill(0x42, 12));
    this.txIdx = this.txSeen = this.rxIdx = this.rxSeen = this.rxCopied = 0;
    this.copySlots.clear();
    this.answered.length = 0;
    this.mcast.length = 0;
    this.violation = null;
    this.generation++;
    this.key = `${this.name}#${this.generation}`;
    this.slot = (await pool.connect(
      this.fe.spec({
        key: this.key,
        name: `vif${domid}.0`,
        peer: this.peer === "null" ? { kind: "null", name: "null", fd: -1 } : { kind: "switch", name: this.key, fd: -1 },
        features: this.sg ? { "feature-sg": true, "feature-gso-tcpv4": true, "feature-gso-tcpv6": true } : {},
      }),
    )).statsSlot;
  }

  async disconnect(dir: string, pool: Pool): Promise<void> {
    await pool.disconnect(this.key);
    this.audit.disable();
    this.audit.close();
    this.fe.close();
    destroyDomain(dir, this.fe.domid);
  }

  private take(pool: "goodTx" | "foreignTx" | "goodRx" | "readonlyRx"): number {
    const list = this[pool];
    return list[this.cursor[pool]++ % list.length]!;
  }
  /** A gref nobody granted (above every gref this guest allocates). */
  neverGranted(): number {
    return 12_000 + (this.cursor.never++ % 4000);
  }
  /** A gref beyond the grant table (16384 entries). */
  beyondTable(): number {
    return 16_384 + (this.cursor.beyond++ % 40_000);
  }
  goodTxRef(): number {
    return this.take("goodTx");
  }
  foreignTxRef(): number {
    return this.take("foreignTx");
  }
  goodRxRef(): number {
    return this.take("goodRx");
  }
  readonlyRxRef(): number {
    return this.take("readonlyRx");
  }
}

/** Packet builders: each returns slots and what the backend must make of them. */
class Generator {
  constructor(private readonly r: Rng) {}

  private badRef(v: FuzzVif): number {
    const k = this.r.int(3);
    return k === 0 ? v.neverGranted() : k === 1 ? v.beyondTable() : v.foreignTxRef();
  }

  private data(gref: number, offset: number, flags: number, id: number, size: number, own: number): Slot {
    return { gref, offset, flags, id, size, extra: false, own };
  }

  private extraSlot(type: number, more: boolean, gsoSize: number, gsoType: number): Slot {
    // struct netif_extra_info over the request: type, flags in the gref word's low bytes, gso.size
    // above them, gso.type in the offset field.
    return { gref: type | ((more ? XEN_NETIF_EXTRA_FLAG_MORE : 0) << 8) | (gsoSize << 16), offset: gsoType, flags: 0, id: 0, size: 0, extra: true, own: 0 };
  }

  /** A single-slot packet: good, a runt, or with a bad grant. */
  single(v: FuzzVif, id: () => number): Packet {
    const r = this.r;
    const csum = r.chance(0.2) ? NETTXF_csum_blank : 0;
    const k = r.int(100);
    if (k < 8) {
      // A runt: an error whatever its offset (the size is judged first, as in netback).
      const size = r.int(14);
      return { slots: [this.data(v.goodTxRef(), r.int(4097 - size), csum, id(), size, size)], status: NETIF_RSP_ERROR, copied: false };
    }
    const size = r.chance(0.1) ? r.range(1515, 4096) : r.range(14, 1514);
    const offset = r.int(4097 - size);
    if (k < 16) return { slots: [this.data(this.badRef(v), offset, csum, id(), size, size)], status: NETIF_RSP_ERROR, copied: true };
    return { slots: [this.data(v.goodTxRef(), offset, csum, id(), size, size)], status: NETIF_RSP_OKAY, copied: true };
  }

  /** Several slots (and extras): good, a runt, or with a bad grant in one slot. */
  multi(v: FuzzVif, id: () => number): Packet {
    const r = this.r;
    // Without SG the packet is answered ERROR whole, but more than 20 slots (extras counted) is fatal.
    const n = v.sg && r.chance(0.1) ? r.range(17, 20) : r.range(2, 8);
    const own: number[] = [];
    for (let k = 0; k < n; k++) own.push(r.chance(0.15) ? 0 : r.chance(0.2) ? r.range(1, 8) : r.range(1, 4096));
    let total = own.reduce((a, b) => a + b, 0);
    while (total > 65535) {
      const k = r.int(n);
      total -= own[k]!;
      own[k] = 0;
    }
    const runt = total < 14;
    const badAt = r.chance(0.08) ? r.int(n) : -1;
    const extras: Slot[] = [];
    if (r.chance(0.35)) {
      const count = r.range(1, 2);
      for (let e = 0; e < count; e++) {
        const gso = e === 0 && r.chance(0.8);
        extras.push(gso ? this.extraSlot(1, e < count - 1, r.range(1, 9000), r.range(1, 2)) : this.extraSlot(r.range(2, 4), e < count - 1, r.int(65536), r.int(256)));
      }
    }
    const slots: Slot[] = [];
    for (let k = 0; k < n; k++) {
      const offset = r.int(4097 - own[k]!);
      const gref = k === badAt && own[k]! > 0 ? this.badRef(v) : v.goodTxRef();
      const more = k < n - 1 ? NETTXF_more_data : 0;
      const flags = more | (k === 0 && extras.length ? NETTXF_extra_info : 0) | (k === 0 && r.chance(0.2) ? NETTXF_csum_blank : 0);
      slots.push(this.data(gref, offset, flags, id(), k === 0 ? total : own[k]!, own[k]!));
      if (k === 0) slots.push(...extras);
    }
    const bad = badAt >= 0 && own[badAt]! > 0;
    if (!v.sg) return { slots, status: NETIF_RSP_ERROR, copied: false }; // not negotiated: answered ERROR whole
    // The last extra of each type counts (netback's extras[type - 1]); an ADD wins over a DEL.
    const mc = (type: number) => extras.filter((e) => (e.gref & 0xff) === type).at(-1);
    const m = mc(2) ?? mc(3);
    if (m) {
      // The extra's addr[6] sits at bytes 2..7 of its slot: gso.size's two bytes, the offset field, zeros.
      const b = [(m.gref >>> 16) & 0xff, (m.gref >>> 24) & 0xff, m.offset & 0xff, (m.offset >>> 8) & 0xff, 0, 0];
      return { slots, status: NETIF_RSP_OKAY, copied: false, mcast: { op: (m.gref & 0xff) === 2 ? "add" : "del", addr: b.join(":") } };
    }
    if (runt) return { slots, status: NETIF_RSP_ERROR, copied: false };
    return { slots, status: bad ? NETIF_RSP_ERROR : NETIF_RSP_OKAY, copied: true };
  }

  /** A packet that breaks the protocol (or a ring index out of bounds): the vif must go. */
  violation(v: FuzzVif, id: () => number, at: number): Packet {
    const r = this.r;
    const kinds = v.sg ? VIOLATIONS_SG : VIOLATIONS_PLAIN;
    const kind = kinds[r.int(kinds.length)]!;
    const hexAt = at.toString(16);
    const ref = () => v.goodTxRef();
    switch (kind) {
      case "cross-page": {
        const size = r.range(14, 4096);
        const offset = r.range(4097 - size, 4095);
        return { slots: [this.data(ref(), offset, 0, id(), size, size)], status: 0, copied: false, violation: { kind, message: new RegExp(`^tx packet at 0x${hexAt}: its first slot at offset ${offset} with ${size} bytes crosses its page$`) } };
      }
      case "slots": {
        const n = r.range(21, 24);
        const slots = Array.from({ length: n }, (_, k) => this.data(ref(), 0, k < n - 1 ? NETTXF_more_data : 0, id(), k === 0 ? n * 10 : 10, 10));
        return { slots, status: 0, copied: false, violation: { kind, message: new RegExp(`^tx packet at 0x${hexAt} spans more than 20 slots$`) } };
      }
      case "frag-size": {
        const first = this.data(ref(), 0, NETTXF_more_data, id(), 100, 0);
        return { slots: [first, this.data(ref(), 0, 0, id(), 101, 101)], status: 0, copied: false, violation: { kind, message: /a fragment of 101 bytes is larger than the 100 left of its size$/ } };
      }
      case "frag-page": {
        const first = this.data(ref(), 0, NETTXF_more_data, id(), 2000, 1000);
        return { slots: [first, this.data(ref(), 3500, 0, id(), 1000, 1000)], status: 0, copied: false, violation: { kind, message: /a fragment at offset 3500 of 1000 bytes crosses its page$/ } };
      }
      case "extra-type": {
        const type = r.chance(0.5) ? 0 : r.range(5, 255);
        const slots = [this.data(ref(), 0, NETTXF_extra_info, id(), 60, 60), this.extraSlot(type, false, 0, 0)];
        return { slots, status: 0, copied: false, violation: { kind, message: new RegExp(`^tx extra info type ${type} is unknown$`) } };
      }
      case "gso-size": {
        const slots = [this.data(ref(), 0, NETTXF_extra_info, id(), 60, 60), this.extraSlot(1, false, 0, 1)];
        return { slots, status: 0, copied: false, violation: { kind, message: /GSO size is 0$/ } };
      }
      case "gso-type": {
        const t = r.chance(0.5) ? 0 : r.range(3, 255);
        const slots = [this.data(ref(), 0, NETTXF_extra_info, id(), 60, 60), this.extraSlot(1, false, 1448, t)];
        return { slots, status: 0, copied: false, violation: { kind, message: new RegExp(`GSO type ${t} is unknown$`) } };
      }
      case "past-prod": {
        const slots = [this.data(ref(), 0, NETTXF_more_data, id(), 200, 100), this.data(ref(), 0, NETTXF_more_data, id(), 100, 100)];
        return { slots, status: 0, copied: false, violation: { kind, message: new RegExp(`^tx packet at 0x${hexAt} continues past req_prod`) } };
      }
      default:
        // Ring-index violations are posted by the step itself (tx-prod, rx-prod).
        return { slots: [], status: 0, copied: false, violation: { kind, message: kind === "tx-prod" ? /^tx req_prod 0x[0-9a-f]+ is more than a ring ahead of 0x[0-9a-f]+$/ : /^rx req_prod 0x[0-9a-f]+ is more than a ring ahead of 0x[0-9a-f]+$/ } };
    }
  }
}

export async function runRingFuzz(o: FuzzOptions): Promise<FuzzReport> {
  const r = new Rng(o.seed);
  const gen = new Generator(r);
  const host = freshHost("fuzz");
  const stats = StatsArena.create({ workers: 1, slotsPerWorker: 8 });
  const errors: string[] = [];
  const pool = (await createWorkerPool({
    platform: { kind: "sim", dir: host.dir, domid: 0 },
    workers: 1,
    stats,
    scatterGather: true,
    rxQueueBytes: RX_QUEUE_BYTES,
    log: createLogger({ level: "error", format: "text", write: (l) => errors.push(l) }),
  })) as Pool;
  const faults: VifFault[] = [];
  pool.onFault((f) => faults.push(f));
  let lostWorker = "";
  pool.onWorkerLost((w) => (lostWorker = `worker ${w} was lost`));

  const report: FuzzReport = { seed: o.seed, ops: 0, steps: 0, txSlots: 0, rxSlots: 0, kicks: 0, violations: {}, copiesChecked: 0, neighbourFrames: 0, seconds: 0, rssGrowthMiB: 0 };
  const t0 = performance.now();
  let step = 0;
  const fail = (what: string): never => {
    throw new FuzzFailure(`ring fuzzer: seed ${o.seed}, step ${step}: ${what}`);
  };

  // Neighbours: n1 sends, n2 receives; both keep their rx rings drained.
  const n1 = new FakeFrontend(host.dir, createDomain(host.dir, { memoryPages: 400 }));
  const n2 = new FakeFrontend(host.dir, createDomain(host.dir, { memoryPages: 400 }));
  const n1Mac = macOf(201);
  const fromN1: Uint8Array[] = [];
  const ft = new FuzzVif("ft", true, "null", macOf(211));
  const fr = new FuzzVif("fr", false, "switch", macOf(212));
  const vifs = [ft, fr];
  let drainer: { stop(): Promise<void> } | undefined;
  let rssBase = 0;
  let rssMax = 0;
  try {
    for (const [fe, key] of [[n1, "n1"], [n2, "n2"]] as const) await pool.connect(fe.spec({ key, name: `vif${fe.domid}.0`, peer: { kind: "switch", name: key, fd: -1 } }));
    drainer = drainRx([n1, n2], (fe, f) => {
      if (fe === n2 && f.subarray(6, 12).every((b, i) => b === n1Mac[i])) fromN1.push(f);
    });
    for (const v of vifs) await v.connect(host.dir, pool);
    let n1Id = 0;
    let n1Sent = 0;

    while (report.ops < o.ops) {
      step++;
      // ---- the fuzzed frontends write ----
      for (const v of vifs) {
        const fe = v.fe;
        let nextId = r.int(65536);
        const id = () => (nextId = (nextId + 1) & 0xffff);
        const packets: Packet[] = [];
        let slots = 0;
        const room = 256 - (v.txIdx - v.txSeen);
        const want = r.int(v.sg ? 40 : 24);
        let violation: Packet | null = null;
        for (let p = 0; p < want; p++) {
          const pk = v.sg && r.chance(0.35) ? gen.multi(v, id) : !v.sg && r.chance(0.05) ? gen.multi(v, id) : gen.single(v, id);
          if (slots + pk.slots.length > room) break;
          packets.push(pk);
          slots += pk.slots.length;
        }
        if (r.chance(0.006)) {
          const vp = gen.violation(v, id, v.txIdx + slots);
          // A ring-index violation goes alone: requests posted with it may or may not be served first.
          if (vp.slots.length === 0) packets.length = slots = 0;
          if (slots + vp.slots.length <= room) violation = vp;
        }
        if (violation) packets.push(violation);
        const ringViolation = violation !== null && violation.slots.length === 0;
        // Write them: expectations first, then the ring.
        const raw: { gref: number; offset: number; flags: number; id: number; size: number }[] = [];
        let idx = v.txIdx;
        for (const pk of packets) {
          let first = true;
          if (pk.mcast && !pk.violation) {
            const list = v.mcast;
            if (pk.mcast.op === "del") {
              const at = list.indexOf(pk.mcast.addr);
              if (at >= 0) list.splice(at, 1);
            } else if (list.length < 64) list.push(pk.mcast.addr);
            else pk.status = NETIF_RSP_ERROR;
          }
          for (const s of pk.slots) {
            if (!pk.violation) {
              const e = v.txExpect[idx & 255]!;
              e.id = s.id;
              e.extra = s.extra;
              e.status = s.extra ? NETIF_RSP_NULL : pk.mcast && !first ? NETIF_RSP_ERROR : pk.status;
              if (!s.extra) first = false;
              if (!s.extra) v.copySlots.set(s.gref, { idx, offset: s.offset, own: s.own, mustCopy: pk.copied && s.own > 0, copied: false });
            }
            raw.push({ gref: s.gref, offset: s.offset, flags: s.flags, id: s.id, size: s.size });
            idx++;
          }
        }
        if (violation) {
          const vk = violation.violation!;
          v.violation = { kind: vk.kind, message: vk.message, at: v.txIdx + slots };
        }
        if (raw.length) {
          fe.postRawTx(raw);
          v.txIdx += raw.length;
          report.txSlots += raw.length;
          report.ops += raw.length;
        }
        // rx requests: mostly good buffers, some read-only, some beyond the table. How many fit
        // depends on how many frames the vif took meanwhile (timing), so every draw is made whether
        // or not its request is posted: the random stream, and so the run, stays the seed's.
        const rxRoom = 256 - (v.rxIdx - v.rxSeen);
        const rxDraws = r.int(v.peer === "switch" ? 40 : 6);
        const rxWant = ringViolation ? 0 : Math.min(rxRoom, rxDraws);
        const reqs: { id: number; gref: number }[] = [];
        for (let k = 0; k < rxDraws; k++) {
          const q = r.int(100);
          const id = r.int(65536);
          if (k >= rxWant) continue;
          const gref = q < 85 ? v.goodRxRef() : q < 95 ? v.readonlyRxRef() : v.beyondTable();
          const p = v.rxPosted[(v.rxIdx + k) & 255]!;
          p.id = id;
          p.gref = gref;
          p.good = q < 85;
          reqs.push({ id, gref });
        }
        if (rxWant > 0) {
          fe.postRawRx(reqs);
          v.rxIdx += rxWant;
          report.rxSlots += rxWant;
          report.ops += rxWant;
        }
        // Ring-index violations.
        if (v.violation?.kind === "tx-prod") fe.setReqProd((v.txIdx + 257 + r.int(1 << 20)) >>> 0);
        if (v.violation?.kind === "rx-prod") fe.setRxReqProd((v.rxIdx + 257 + r.int(1 << 20)) >>> 0);
        // Kicks beyond the ones the ring asked for, now and then a storm.
        const kicks = r.chance(0.01) ? 300 : r.int(3);
        for (let k = 0; k < kicks; k++) fe.guest.evtchn.notify(r.chance(0.5) ? fe.txPort : fe.rxPort);
        report.kicks += kicks;
        report.ops += kicks;
      }
      // ---- the neighbour sends ----
      const k = r.range(1, 8);
      const nf = frames(n1Mac, k, n1Sent, (i) => 60 + ((n1Sent + i) * 37) % 1400);
      n1.sendFrames(nf, n1Id);
      n1Id += k;
      n1Sent += k;
      report.neighbourFrames += k;

      // ---- wait for the step to settle, then check ----
      const deadline = Date.now() + STEP_LIMIT_MS;
      let overrun = false;
      for (;;) {
        let settled = fromN1.length >= n1Sent;
        for (const v of vifs) {
          const rsp = v.fe.headers().tx.rspProd;
          // Answers past the violation (or past req_prod) are wrong already: stop waiting, checkVif says why.
          if (((rsp - (v.violation ? v.violation.at : v.txIdx)) | 0) > 0) overrun = true;
          if (v.violation) settled &&= faults.some((f) => f.key === v.key) && rsp === v.violation.at >>> 0;
          else settled &&= rsp === v.txIdx >>> 0;
        }
        if (settled || overrun || lostWorker) break;
        if (Date.now() > deadline) {
          const state = vifs.map((v) => `${v.key}: tx req ${v.txIdx} rsp ${v.fe.headers().tx.rspProd}${v.violation ? ` (violation ${v.violation.kind} at ${v.violation.at})` : ""}`).join("; ");
          fail(`the step did not settle within ${STEP_LIMIT_MS} ms (a hang or a lost response): ${state}; n2 has ${fromN1.length} of ${n1Sent} frames from n1; faults ${JSON.stringify(faults)}`);
        }
        await Bun.sleep(0);
      }
      if (lostWorker) fail(`${lostWorker}: an exception escaped the data path? log: ${errors.slice(-3).join(" | ")}`);
      for (const v of vifs) checkVif(v);
      // Neighbours: every frame answered OKAY and delivered intact, in order.
      const nr = n1.takeResponses();
      for (const [i, x] of nr.entries()) if (x.status !== NETIF_RSP_OKAY) fail(`neighbour n1's frame ${i} answered ${x.status}`);
      if (fromN1.length !== n1Sent) fail(`n2 got ${fromN1.length} of n1's ${n1Sent} frames`);
      for (let i = 0; i < k; i++) {
        const got = fromN1[n1Sent - k + i]!;
        const want = nf[i]!;
        if (got.length !== want.length || !got.every((b, j) => b === want[j])) fail(`n2 got n1's frame ${n1Sent - k + i} altered`);
      }
      // Only the provoked faults.
      for (const f of faults.splice(0)) {
        const v = vifs.find((x) => x.key === f.key);
        if (!v || !v.violation) fail(`unexpected fault on ${f.key}: ${f.errno} ${f.message}`);
        if (f.errno !== 71 || !v!.violation!.message.test(f.message)) fail(`${f.key}: fault "${f.errno} ${f.message}" is not the ${v!.violation!.kind} violation posted (${v!.violation!.message})`);
        report.violations[v!.violation!.kind] = (report.violations[v!.violation!.kind] ?? 0) + 1;
        await v!.disconnect(host.dir, pool);
        await v!.connect(host.dir, pool);
      }
      for (const v of vifs) if (v.violation) fail(`${v.key}: the ${v.violation.kind} violation was not reported`);
      const unexpected = errors.filter((l) => !/vif fault: /.test(l));
      if (unexpected.length) fail(`error log: ${unexpected.join(" | ")}`);
      errors.length = 0;
      // Memory: the process's RSS bounded (queues are checked per vif above).
      if (step % 256 === 0) {
        // What is retained, not garbage a collection has not reached yet: the fuzzer shares its
        // process with the suite's earlier files, whose leftovers made unforced readings swing from
        // 22 to 206 MiB between runs of the same seeds.
        Bun.gc(true);
        const rss = process.memoryUsage.rss() / 1048576;
        if (step === 256) rssBase = rss;
        rssMax = Math.max(rssMax, rss);
        if (rssBase && rss - rssBase > RSS_BOUND_MIB) fail(`RSS grew by ${(rss - rssBase).toFixed(0)} MiB (bound ${RSS_BOUND_MIB})`);
        if (step % 1024 === 0) o.log?.(`seed ${o.seed}: step ${step}, ${report.ops} ops, ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      }
    }
  } finally {
    report.steps = step;
    report.seconds = (performance.now() - t0) / 1000;
    report.rssGrowthMiB = rssBase ? Math.max(0, rssMax - rssBase) : 0;
    await drainer?.stop();
    await pool.close();
    for (const v of vifs) {
      try {
        v.audit?.close();
        v.fe?.close();
      } catch {
        // closed already
      }
    }
    n1.close();
    n2.close();
    host.cleanup();
  }
  return report;

  /** Responses, copies and queue bounds of one fuzzed vif after a step. */
  function checkVif(v: FuzzVif): void {
    const fe = v.fe;
    // tx: each new response in its slot, with the id and status its request deserves.
    const txRsp = fe.takeResponses();
    const stop = v.violation ? v.violation.at : v.txIdx;
    if (v.txSeen + txRsp.length > stop) fail(`${v.key}: ${v.txSeen + txRsp.length} tx responses for ${stop} answerable requests`);
    for (const x of txRsp) {
      const e = v.txExpect[v.txSeen & 255]!;
      if (e.extra ? x.status !== NETIF_RSP_NULL : x.id !== e.id || x.status !== e.status)
        fail(`${v.key}: tx response ${v.txSeen} is {id ${x.id}, status ${x.status}}, expected {id ${e.extra ? "-" : e.id}, status ${e.status}}`);
      v.txSeen++;
    }
    // rx: ids in their slots; a good buffer gets a frame at offset 2, a bad one ERROR.
    const rxRsp = fe.takeRx();
    for (const x of rxRsp) {
      const p = v.rxPosted[v.rxSeen & 255]!;
      const ok = p.good ? x.status > 0 && x.status <= 4094 && x.offset === 2 : x.status === NETIF_RSP_ERROR;
      if (x.id !== p.id || !ok) fail(`${v.key}: rx response ${v.rxSeen} is {id ${x.id}, status ${x.status}, offset ${x.offset}} for a ${p.good ? "good" : "bad"} buffer with id ${p.id}`);
      v.rxSeen++;
    }
    if (v.rxSeen > v.rxIdx) fail(`${v.key}: ${v.rxSeen} rx responses for ${v.rxIdx} requests`);
    // Every grant copy: a consumed slot's own bytes, once; rx buffers in request order.
    const w = v.audit.take();
    if (w.dropped) fail(`${v.key}: the audit dropped ${w.dropped} records (more than its capacity in one step)`);
    for (const rec of w.records) {
      report.copiesChecked++;
      if (rec.op === AuditOp.copyFrom) {
        const s = v.copySlots.get(rec.ref);
        if (!s || s.idx >= v.txSeen) fail(`${v.key}: copy from gref ${rec.ref} which no consumed tx request names`);
        if (s!.copied || !s!.mustCopy) fail(`${v.key}: gref ${rec.ref} (slot ${s!.idx}) copied ${s!.copied ? "twice" : "though its packet is not taken in"}`);
        if (rec.offset !== s!.offset || rec.len !== s!.own) fail(`${v.key}: copy of gref ${rec.ref} at ${rec.offset}+${rec.len}, its slot is ${s!.offset}+${s!.own}`);
        s!.copied = true;
        v.answered.push(s!);
      } else if (rec.op === AuditOp.copyTo) {
        if (v.rxCopied >= v.rxIdx) fail(`${v.key}: rx copy to gref ${rec.ref} with no request left`);
        const p = v.rxPosted[v.rxCopied & 255]!;
        if (rec.ref !== p.gref || rec.offset !== 2 || rec.offset + rec.len > 4096) fail(`${v.key}: rx copy to gref ${rec.ref} at ${rec.offset}+${rec.len}, request ${v.rxCopied} has gref ${p.gref}`);
        v.rxCopied++;
      } else if (rec.ref !== fe.txRef && rec.ref !== fe.rxRef) {
        fail(`${v.key}: ${rec.op} of gref ${rec.ref}: the data path maps nothing but the rings`);
      }
    }
    if (v.rxCopied < v.rxSeen) fail(`${v.key}: ${v.rxSeen} rx responses but only ${v.rxCopied} copies`);
    // Each answered packet's slots that had to be copied were: check those answered before now.
    for (const [gref, s] of v.copySlots) {
      if (s.idx >= v.txSeen) continue;
      if (s.mustCopy && !s.copied) fail(`${v.key}: tx slot ${s.idx} (gref ${gref}) answered without its copy`);
      v.copySlots.delete(gref);
    }
    v.answered.length = 0;
    const st = v.slot ? readVifStats(stats, v.slot) : null;
    if (st && st.rx_queue_bytes > RX_QUEUE_BYTES) fail(`${v.key}: rx queue at ${st.rx_queue_bytes} bytes (bound ${RX_QUEUE_BYTES})`);
    if (!v.violation) return;
    // The violating packet and everything after it: never answered.
    if (v.txSeen !== v.violation.at) fail(`${v.key}: ${v.txSeen} answered, the violation was at ${v.violation.at}`);
  }
}
