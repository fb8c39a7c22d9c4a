// A vif's journal: the one file per connected vif that outlives the daemon, so that a successor (a
// restarted qnicd, or another worker after one died) can take over the vif's rings without the guest
// noticing. It lives in qnicd's runtime directory (tmpfs: /run/qnicd, or the sim host's run
// directory) and is mapped shared by the worker that serves the vif and by the main thread.
//
// Why it exists: a response overwrites its request in the same ring slot (xen/include/public/io/
// ring.h). A backend that dies after writing responses but before publishing rsp_prod leaves slots
// that hold response bytes where its successor expects requests; read as a tx request, a response's
// id|status<<16 is a grant reference, read as an rx request, flags|status<<16 is one, and copying
// from or into that grant touches guest memory the guest never offered for this packet (another
// packet's page, or a page it granted to someone else). Linux netback never meets this: its unbind
// (9476654bd5e8 "xen-netback: support dynamic unbind/bind") only happens after a clean stop that
// pushed every response. A crash gives no such chance, so qnicd never writes a response into the
// ring before the journal says which responses it is about to publish:
//
//   1. responses are built in the ring's staging page in this file (same slot layout as the ring);
//   2. `committed` := the rsp_prod they bring the ring to          (the commit point)
//   3. the staged response words are copied into the ring's slots;
//   4. the ring's rsp_prod := committed                            (what the guest sees)
//   5. `published` := committed.
//
// A successor finds one of: the ring's rsp_prod equal to `committed` (nothing was pending: attach
// there), or equal to `published` with `committed` ahead of it by at most a ring (it died between 2
// and 4: copy the staged responses again, publish them, attach after them). Anything else, or no
// journal at all, means this vif cannot be taken over safely; the backend then closes it for the
// guest to reconnect. Cost: one or two 32-bit copies per response and three stores per batch.
//
// Layout (little-endian words; a page each so the staging pages mirror the rings' pages):
//   page 0: header words below, the frontend's hash configuration at HASH_OFFSET (queue 0's journal:
//           the control ring's), counters (float64) at COUNTERS_OFFSET, identity JSON at IDENTITY_OFFSET
//   page 1: tx staging page     page 2: rx staging page, whose tail past the rx ring's slots holds
//           the vif's multicast list at MCAST_OFFSET (queue 0's journal)
import { closeSync, existsSync, ftruncateSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import { LAYOUT_ID, VIF_COUNTERS, type VifStats } from "../stats/index.ts";
import type { HashConfig } from "../pool/types.ts";

export const JOURNAL_MAGIC = 0x716a6e6c; // "qjnl"
export const JOURNAL_VERSION = 1;
export const JOURNAL_PAGE = 4096;
export const JOURNAL_BYTES = 3 * JOURNAL_PAGE;

// Header words (Uint32 index into page 0).
export const J_MAGIC = 0;
export const J_VERSION = 1;
/** 0: written by the main thread for a fresh connect (the worker starts from the ring's rsp_prod); 1: a worker has attached. */
export const J_LIVE = 2;
export const J_TX_PUBLISHED = 4;
export const J_TX_COMMITTED = 5;
export const J_RX_PUBLISHED = 6;
export const J_RX_COMMITTED = 7;
export const J_IDENTITY_LEN = 8;
export const J_COUNTERS_LAYOUT = 9;
export const J_COUNTERS_COUNT = 10;
/**
 * The hash configuration the frontend set over its control ring, so a successor keeps hashing and
 * steering as the guest asked (a guest never learns of the restart, so never configures again). A
 * word says whether it is whole (0 while written, 1 after: a crash mid-write leaves "none"), then
 * algorithm, types and table size (one octet each), the 40-octet key and the table (an octet per
 * entry: queue numbers are below 64). Journals older than it hold zeros there: "none".
 */
export const HASH_OFFSET = 64;
const HASH_STATE_WORD = HASH_OFFSET / 4;
const HASH_KEY_OFFSET = HASH_OFFSET + 8;
const HASH_MAPPING_OFFSET = HASH_KEY_OFFSET + 40;
const HASH_MAPPING_MAX = 128;
export const COUNTERS_OFFSET = 256;
export const MAX_COUNTERS = 96;
export const IDENTITY_OFFSET = 1024;
export const IDENTITY_MAX = JOURNAL_PAGE - IDENTITY_OFFSET;

export const TX_STAGING_OFFSET = JOURNAL_PAGE;
export const RX_STAGING_OFFSET = 2 * JOURNAL_PAGE;
/**
 * The multicast groups the frontend added (MCAST_ADD / MCAST_DEL extras), so a successor goes on
 * filtering as the guest asked: a word saying whether it is whole (0 while written, 1 after), the
 * count, then 6 octets a group (at most XEN_NETBK_MCAST_MAX). It sits in the rx staging page past
 * anything a response is staged in: the rx ring's header and 256 slots of 8 octets end at 2112.
 */
export const MCAST_OFFSET = RX_STAGING_OFFSET + 2560;
const MCAST_MAX = 64;

/** What the vif was connected with: a successor adopts only a vif whose xenstore nodes still say the same. */
export interface VifIdentity {
  backendPath: string;
  domid: number;
  devid: number;
  txRingRef: number;
  rxRingRef: number;
  txEvtchn: number;
  rxEvtchn: number;
  /**
   * Every queue's rings and ports as [tx-ring-ref, rx-ring-ref, tx port, rx port]: four numbers a
   * queue keep a 64-queue vif's identity inside IDENTITY_MAX (as objects, one of about 45 queues
   * was already too large). Journals of the qnicd before it name them in `queues` as objects, and
   * those of a single-queue qnicd in neither (queueRefsOf reads all three).
   */
  queueRefs?: QueueRefs[];
  queues?: { txRingRef: number; rxRingRef: number; txEvtchn: number; rxEvtchn: number }[];
  /** The host side: its kind and name (a TAP is persistent, so it survives the daemon). */
  peer: { kind: string; name: string };
  features: Record<string, boolean>;
}

export type QueueRefs = [number, number, number, number];

/** An identity's queues as QueueRefs, whichever qnicd wrote it (a single-queue one: its top-level rings). */
export function queueRefsOf(id: VifIdentity): QueueRefs[] {
  if (id.queueRefs) return id.queueRefs;
  if (id.queues) return id.queues.map((q) => [q.txRingRef, q.rxRingRef, q.txEvtchn, q.rxEvtchn]);
  return [[id.txRingRef, id.rxRingRef, id.txEvtchn, id.rxEvtchn]];
}

/** The journal's file for one vif (its queue 0: the only one of a single-queue vif). */
export function journalPath(dir: string, domid: number, devid: number): string {
  return join(dir, `vif${domid}.${devid}.journal`);
}

/** The journal of queue `queue` of a multi-queue vif: each queue's rings are taken over on their own. */
export function queueJournalPath(dir: string, domid: number, devid: number, queue: number): string {
  return queue === 0 ? journalPath(dir, domid, devid) : join(dir, `vif${domid}.${devid}.q${queue}.journal`);
}

/** Removes the journals of queues 0 to `queues` - 1 of one vif: no directory listing needed. */
export function removeQueueJournals(dir: string, domid: number, devid: number, queues: number): void {
  for (let q = 0; q < queues; q++) removeJournal(queueJournalPath(dir, domid, devid, q));
}

/** The file names of every queue journal past queue 0 in `dir` (vif<d>.<v>.q<n>.journal). */
export function listQueueJournalNames(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((name) => /^vif\d{1,5}\.\d{1,9}\.q\d+\.journal$/.test(name));
}

/** Whether `name` (from listQueueJournalNames) is a queue journal of vif `domid`.`devid`. */
export function isQueueJournalOf(name: string, domid: number, devid: number): boolean {
  return name.startsWith(`vif${domid}.${devid}.q`);
}

/** Every journal file in `dir` with the vif it names (stale ones are cleaned up at start). */
export function listJournals(dir: string): { path: string; domid: number; devid: number }[] {
  if (!existsSync(dir)) return [];
  const out: { path: string; domid: number; devid: number }[] = [];
  for (const name of readdirSync(dir)) {
    const m = /^vif(\d{1,5})\.(\d{1,9})\.journal$/.exec(name);
    if (m) out.push({ path: join(dir, name), domid: Number(m[1]), devid: Number(m[2]) });
  }
  return out;
}

/**
 * Main thread, before a fresh connect: a new journal naming the vif, with no ring state yet. Written
 * to a temporary name and renamed, so a crash mid-write never leaves a half journal under the real name.
 */
export function writeFreshJournal(path: string, identity: VifIdentity): void {
  const json = Buffer.from(JSON.stringify(identity));
  if (json.length > IDENTITY_MAX) throw new Error(`vif${identity.domid}.${identity.devid}: journal identity too large (${json.length} bytes)`);
  const buf = Buffer.alloc(JOURNAL_BYTES);
  buf.writeUInt32LE(JOURNAL_MAGIC, J_MAGIC * 4);
  buf.writeUInt32LE(JOURNAL_VERSION, J_VERSION * 4);
  buf.writeUInt32LE(0, J_LIVE * 4);
  buf.writeUInt32LE(json.length, J_IDENTITY_LEN * 4);
  json.copy(buf, IDENTITY_OFFSET);
  mkdirSync(join(path, ".."), { recursive: true, mode: 0o700 });
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, "w", 0o600);
  try {
    writeSync(fd, buf);
    ftruncateSync(fd, JOURNAL_BYTES);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

/** Why a journal file cannot be used, or null. */
function checkHeader(buf: Uint8Array): string | null {
  if (buf.byteLength < JOURNAL_BYTES) return `it is ${buf.byteLength} bytes, not ${JOURNAL_BYTES}`;
  const w = new Uint32Array(buf.buffer, buf.byteOffset, 16);
  if (w[J_MAGIC] !== JOURNAL_MAGIC) return "it is not a qnicd journal";
  if (w[J_VERSION] !== JOURNAL_VERSION) return `it has version ${w[J_VERSION]}, this qnicd writes ${JOURNAL_VERSION}`;
  if (w[J_IDENTITY_LEN] > IDENTITY_MAX) return "its identity is too long";
  return null;
}

/** Reads a journal's identity (main thread, at start); throws one line naming what is wrong. */
export function readJournalIdentity(path: string): VifIdentity {
  const buf = readFileSync(path);
  const bad = checkHeader(buf);
  if (bad) throw new Error(`journal ${path}: ${bad}`);
  const len = buf.readUInt32LE(J_IDENTITY_LEN * 4);
  try {
    return JSON.parse(buf.subarray(IDENTITY_OFFSET, IDENTITY_OFFSET + len).toString("utf8")) as VifIdentity;
  } catch {
    throw new Error(`journal ${path}: its identity is not readable`);
  }
}

export function removeJournal(path: string): void {
  rmSync(path, { force: true });
}

/** A journal mapped shared into this thread (Bun.mmap is MAP_SHARED: writes reach the file at once). */
export class MappedJournal {
  readonly words: Uint32Array;
  readonly counters: Float64Array;
  /** Kept: the views below borrow its mapping (a dropped mapping would be unmapped by the GC). */
  private readonly map: Uint8Array;

  private constructor(map: Uint8Array) {
    this.map = map;
    this.words = new Uint32Array(map.buffer, map.byteOffset, JOURNAL_PAGE >> 2);
    this.counters = new Float64Array(map.buffer, map.byteOffset + COUNTERS_OFFSET, MAX_COUNTERS);
  }

  /** Maps `path`; throws one line when it is missing or not a journal of this version. */
  static open(path: string): MappedJournal {
    let map: Uint8Array;
    try {
      map = Bun.mmap(path);
    } catch (e) {
      throw new Error(`journal ${path}: ${(e as Error).message}`);
    }
    const bad = checkHeader(map);
    if (bad) throw new Error(`journal ${path}: ${bad}`);
    return new MappedJournal(map);
  }

  /** The ring's staging page: a view into the same mapping, laid out like the ring's own page. */
  stagingBytes(dir: "tx" | "rx"): Uint8Array {
    const off = dir === "tx" ? TX_STAGING_OFFSET : RX_STAGING_OFFSET;
    return new Uint8Array(this.map.buffer, this.map.byteOffset + off, JOURNAL_PAGE);
  }

  /** Saves the control ring's hash configuration (its worker, on every change). */
  saveHash(c: HashConfig): void {
    const m = this.map;
    Atomics.store(this.words, HASH_STATE_WORD, 0);
    const size = Math.min(c.size, HASH_MAPPING_MAX);
    m[HASH_OFFSET + 4] = c.alg;
    m[HASH_OFFSET + 5] = c.flags;
    m[HASH_OFFSET + 6] = size;
    m.fill(0, HASH_KEY_OFFSET, HASH_MAPPING_OFFSET + HASH_MAPPING_MAX);
    m.set(c.key.slice(0, 40), HASH_KEY_OFFSET);
    m.set(c.mapping.slice(0, size), HASH_MAPPING_OFFSET);
    Atomics.store(this.words, HASH_STATE_WORD, 1);
  }

  /** The saved hash configuration, or null when none was saved whole. The reader bounds it again (VifHash.apply). */
  loadHash(): HashConfig | null {
    if (Atomics.load(this.words, HASH_STATE_WORD) !== 1) return null;
    const m = this.map;
    const size = Math.min(m[HASH_OFFSET + 6], HASH_MAPPING_MAX);
    return {
      alg: m[HASH_OFFSET + 4],
      flags: m[HASH_OFFSET + 5],
      key: Array.from(m.subarray(HASH_KEY_OFFSET, HASH_KEY_OFFSET + 40)),
      size,
      mapping: Array.from(m.subarray(HASH_MAPPING_OFFSET, HASH_MAPPING_OFFSET + size)),
    };
  }

  /** Saves the vif's multicast list ("xx:xx:xx:xx:xx:xx" groups; its queue 0's worker, on every change). */
  saveMcast(groups: readonly string[]): void {
    const m = this.map;
    const w = new DataView(m.buffer, m.byteOffset + MCAST_OFFSET, 8 + MCAST_MAX * 6);
    w.setUint32(0, 0, true);
    const n = Math.min(groups.length, MCAST_MAX);
    for (let i = 0; i < n; i++) groups[i]!.split(":").forEach((h, k) => w.setUint8(8 + i * 6 + k, Number.parseInt(h, 16) & 0xff));
    w.setUint32(4, n, true);
    Atomics.store(new Uint32Array(m.buffer, m.byteOffset + MCAST_OFFSET, 1), 0, 1);
  }

  /** The saved multicast list, or null when none was saved whole. */
  loadMcast(): string[] | null {
    const m = this.map;
    if (Atomics.load(new Uint32Array(m.buffer, m.byteOffset + MCAST_OFFSET, 1), 0) !== 1) return null;
    const w = new DataView(m.buffer, m.byteOffset + MCAST_OFFSET, 8 + MCAST_MAX * 6);
    const n = Math.min(w.getUint32(4, true), MCAST_MAX);
    const out: string[] = [];
    for (let i = 0; i < n; i++) out.push(Array.from({ length: 6 }, (_, k) => w.getUint8(8 + i * 6 + k).toString(16).padStart(2, "0")).join(":"));
    return out;
  }

  /** Saves a vif's counters (the main thread, every second), for a successor to carry on. */
  saveCounters(s: VifStats): void {
    const n = Math.min(VIF_COUNTERS.length, MAX_COUNTERS);
    for (let i = 0; i < n; i++) this.counters[i] = s[VIF_COUNTERS[i]!.name];
    this.words[J_COUNTERS_COUNT] = n;
    Atomics.store(this.words, J_COUNTERS_LAYOUT, LAYOUT_ID);
  }

  /** The saved counters (gauges left out), if they were saved by this counter table; else null. */
  loadCounters(): Partial<VifStats> | null {
    if (Atomics.load(this.words, J_COUNTERS_LAYOUT) !== LAYOUT_ID) return null;
    const n = this.words[J_COUNTERS_COUNT];
    const out: Partial<VifStats> = {};
    VIF_COUNTERS.forEach((row, i) => {
      if (row.kind === "counter" && i < n) out[row.name] = this.counters[i];
    });
    return out;
  }
}
