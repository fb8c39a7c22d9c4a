// Reading the frontend's connection parameters. The guest owns its frontend directory and writes
// these nodes itself, so every value is hostile until proven otherwise: each is parsed strictly
// (plain decimal, bounded), anything else is a fatal error naming the key, and nothing read here
// reaches the data path before it has been validated.
import * as v from "valibot";
import { Errno, GUEST_HINT, quoteGuest, VifFatalError } from "./errors.ts";
import { BACKEND_FEATURES, backendOffers, FRONTEND_FEATURES, offeredQueues, type FeatureNode } from "./features.ts";

/** One queue's ring pair and event channel(s), as the frontend wrote them. */
export interface QueueConfig {
  txRingRef: number;
  rxRingRef: number;
  /** Equal when the queue uses one event channel for both rings. */
  txEvtchn: number;
  rxEvtchn: number;
}

/** What connect needs, read and validated. The top-level ring fields are queue 0's. */
export interface FrontendConfig extends QueueConfig {
  /** Every queue (1 to multi-queue-max-queues), queue 0 first. */
  queues: QueueConfig[];
  /** true when the frontend gave event-channel-tx and event-channel-rx (for every queue). */
  splitEventChannels: boolean;
  mac: string;
  /** The control ring (ctrl-ring-ref, event-channel-ctrl), when the frontend has one and feature-ctrl-ring was offered. */
  ctrlRingRef?: number;
  ctrlEvtchn?: number;
  /** Every FRONTEND_FEATURES key: true only when the frontend asked and (where needed) we offered. */
  features: Record<string, boolean>;
}

/** The raw node values (undefined = node absent). `read` gets keys relative to F or B. */
export interface NodeReader {
  frontend(key: string): Promise<string | undefined>;
  backend(key: string): Promise<string | undefined>;
}

// "%u" as Linux reads these, but strict: digits only, no sign, no spaces, at most 10 digits.
const U32 = v.pipe(v.string(), v.regex(/^\d{1,10}$/), v.transform(Number), v.maxValue(0xffffffff));
// Port 0 is never a valid event channel (Xen reserves it).
const PORT = v.pipe(U32, v.minValue(1));
const MAC = v.pipe(
  v.string(),
  v.regex(/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/),
  v.transform((s) => s.toLowerCase()),
);

function parse<T>(schema: v.GenericSchema<string, T>, raw: string): T | undefined {
  const r = v.safeParse(schema, raw);
  return r.success ? r.output : undefined;
}

function required<T>(schema: v.GenericSchema<string, T>, key: string, raw: string | undefined, expected: string): T {
  if (raw === undefined) throw new VifFatalError(Errno.ENOENT, `reading ${key}: the frontend did not write it`, GUEST_HINT);
  const value = parse(schema, raw);
  if (value === undefined) throw new VifFatalError(Errno.EINVAL, `reading ${key}: ${quoteGuest(raw)} is not ${expected}`, GUEST_HINT);
  return value;
}

/**
 * The names readFrontendConfig may ask for in F and in each F/queue-<n>: a reader may fetch those
 * of them a directory listing shows all at once, instead of one round trip after the other (a key
 * left out here is still read, only later).
 */
export const FRONTEND_KEYS: ReadonlySet<string> = new Set([
  "multi-queue-num-queues",
  "request-rx-copy",
  "mac",
  "tx-ring-ref",
  "rx-ring-ref",
  "event-channel-tx",
  "event-channel-rx",
  "event-channel",
  "ctrl-ring-ref",
  "event-channel-ctrl",
  ...FRONTEND_FEATURES.map((f) => f.key),
]);

/** `offered`: the feature nodes this backend wrote (a frontend's request counts only for those). */
export async function readFrontendConfig(r: NodeReader, offered: readonly FeatureNode[] = BACKEND_FEATURES): Promise<FrontendConfig> {
  // Linux netback's order (xenbus.c connect): the queue count first. One queue keeps its keys at the
  // top of F; more keep each queue's under F/queue-<n>/ (connect_data_rings).
  const max = offeredQueues(offered);
  const queuesRaw = await r.frontend("multi-queue-num-queues");
  let count = 1;
  if (queuesRaw !== undefined) {
    count = required(U32, "multi-queue-num-queues", queuesRaw, "a queue count");
    if (count === 0 || count > max) {
      throw new VifFatalError(
        Errno.EINVAL,
        count === 0 ? "guest requested 0 queues" : `guest requested ${count} queues, exceeding the maximum of ${max}`,
        `configure the guest's netfront for 1 to ${max} queues (Linux: xen_netfront.max_queues=${max})`,
      );
    }
  }
  const queues: QueueConfig[] = [];
  let splitEventChannels = true;
  for (let q = 0; q < count; q++) {
    const dir = count === 1 ? "" : `queue-${q}/`;
    const queue = await readQueue(r, dir);
    queues.push(queue.config);
    if (!queue.split) splitEventChannels = false;
  }

  // Absent means 0 (Linux); only copy mode exists, so anything but a positive value is fatal.
  const rxCopyRaw = await r.frontend("request-rx-copy");
  const rxCopy = rxCopyRaw === undefined ? 0 : required(U32, "request-rx-copy", rxCopyRaw, "0 or 1");
  if (rxCopy === 0) {
    throw new VifFatalError(Errno.EOPNOTSUPP, "frontend doesn't support rx-copy (request-rx-copy is not 1)", "use a netfront that supports rx-copy (every Linux since 2.6.27 does)");
  }

  // The toolstack's B/mac first (the guest cannot write it), then the guest's own F/mac.
  const beMac = await r.backend("mac");
  const feMac = beMac === undefined ? await r.frontend("mac") : undefined;
  const macRaw = beMac ?? feMac;
  const mac = macRaw === undefined ? undefined : parse(MAC, macRaw);
  if (mac === undefined) {
    throw new VifFatalError(
      Errno.ENOENT,
      `parsing ${beMac !== undefined ? "backend" : "frontend"} mac: ${macRaw === undefined ? "neither B/mac nor F/mac exists" : `${quoteGuest(macRaw)} is not xx:xx:xx:xx:xx:xx`}`,
      "give the vif a MAC in the domain config (vif=['mac=00:16:3e:..'])",
    );
  }

  // Optional flags: as Linux's xenbus_read_unsigned, an unreadable value counts as "not requested"
  // (it only ever turns a feature off, which is safe).
  const features: Record<string, boolean> = {};
  for (const f of FRONTEND_FEATURES) {
    const raw = await r.frontend(f.key);
    const asked = raw !== undefined && (parse(U32, raw) ?? 0) !== 0;
    features[f.key] = asked && (f.needsOffer === null || backendOffers(f.needsOffer, offered));
  }

  const ctrl = backendOffers("feature-ctrl-ring", offered) ? await readCtrlRing(r) : {};
  return { ...queues[0], queues, splitEventChannels, mac, features, ...ctrl };
}

/** One queue's keys under `dir` ("" or "queue-<n>/"); a missing or malformed one names its full key. */
async function readQueue(r: NodeReader, dir: string): Promise<{ config: QueueConfig; split: boolean }> {
  const txRingRef = required(U32, `${dir}tx-ring-ref`, await r.frontend(`${dir}tx-ring-ref`), "a grant reference");
  const rxRingRef = required(U32, `${dir}rx-ring-ref`, await r.frontend(`${dir}rx-ring-ref`), "a grant reference");
  // Split channels: Linux netback reads event-channel-tx first and falls back to event-channel.
  const txRaw = await r.frontend(`${dir}event-channel-tx`);
  if (txRaw !== undefined) {
    const txEvtchn = required(PORT, `${dir}event-channel-tx`, txRaw, "an event channel port");
    const rxEvtchn = required(PORT, `${dir}event-channel-rx`, await r.frontend(`${dir}event-channel-rx`), "an event channel port");
    return { config: { txRingRef, rxRingRef, txEvtchn, rxEvtchn }, split: true };
  }
  const port = required(PORT, `${dir}event-channel`, await r.frontend(`${dir}event-channel`), "an event channel port");
  return { config: { txRingRef, rxRingRef, txEvtchn: port, rxEvtchn: port }, split: false };
}

/**
 * Linux netback's connect_ctrl_ring: no ctrl-ring-ref, no control ring; a ref without
 * event-channel-ctrl is fatal. Stricter than Linux on a malformed ref (Linux reads it as absent):
 * a guest that writes the node means to use the ring, so a bad value is its error, named.
 */
async function readCtrlRing(r: NodeReader): Promise<{ ctrlRingRef?: number; ctrlEvtchn?: number }> {
  const refRaw = await r.frontend("ctrl-ring-ref");
  if (refRaw === undefined) return {};
  const ctrlRingRef = required(U32, "ctrl-ring-ref", refRaw, "a grant reference");
  const ctrlEvtchn = required(PORT, "event-channel-ctrl", await r.frontend("event-channel-ctrl"), "an event channel port");
  return { ctrlRingRef, ctrlEvtchn };
}
