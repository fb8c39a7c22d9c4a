// Reading the frontend's connection parameters. The guest owns its frontend directory and writes
// these nodes itself, so every value is hostile until proven otherwise: each is parsed strictly
// (plain decimal, bounded), anything else is a fatal error naming the key, and nothing read here
// reaches the data path before it has been validated.
import * as v from "valibot";
import { Errno, GUEST_HINT, quoteGuest, VifFatalError } from "./errors.ts";
import { BACKEND_FEATURES, backendOffers, FRONTEND_FEATURES, MAX_QUEUES, type FeatureNode } from "./features.ts";

/** What connect needs, read and validated. */
export interface FrontendConfig {
  txRingRef: number;
  rxRingRef: number;
  txEvtchn: number;
  rxEvtchn: number;
  /** true when the frontend gave event-channel-tx and event-channel-rx. */
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

/** `offered`: the feature nodes this backend wrote (a frontend's request counts only for those). */
export async function readFrontendConfig(r: NodeReader, offered: readonly FeatureNode[] = BACKEND_FEATURES): Promise<FrontendConfig> {
  // Linux netback's order: queues first (a multi-queue frontend keeps its ring keys elsewhere).
  const queuesRaw = await r.frontend("multi-queue-num-queues");
  if (queuesRaw !== undefined) {
    const queues = required(U32, "multi-queue-num-queues", queuesRaw, "a queue count");
    if (queues !== MAX_QUEUES) {
      // Also refuses 0: with no queue there is nothing to serve. A frontend honouring the (absent)
      // multi-queue-max-queues node never writes this key at all.
      throw new VifFatalError(
        Errno.EINVAL,
        `guest requested ${queues} queues, but qnicd serves exactly ${MAX_QUEUES} (multi-queue-max-queues is not offered)`,
        "configure the guest's netfront for a single queue (Linux: xen_netfront.max_queues=1)",
      );
    }
  }

  const txRingRef = required(U32, "tx-ring-ref", await r.frontend("tx-ring-ref"), "a grant reference");
  const rxRingRef = required(U32, "rx-ring-ref", await r.frontend("rx-ring-ref"), "a grant reference");

  // Split channels: Linux netback reads event-channel-tx first and falls back to event-channel.
  let txEvtchn: number;
  let rxEvtchn: number;
  let splitEventChannels = false;
  const txRaw = await r.frontend("event-channel-tx");
  if (txRaw !== undefined) {
    txEvtchn = required(PORT, "event-channel-tx", txRaw, "an event channel port");
    rxEvtchn = required(PORT, "event-channel-rx", await r.frontend("event-channel-rx"), "an event channel port");
    splitEventChannels = true;
  } else {
    txEvtchn = rxEvtchn = required(PORT, "event-channel", await r.frontend("event-channel"), "an event channel port");
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
  return { txRingRef, rxRingRef, txEvtchn, rxEvtchn, splitEventChannels, mac, features, ...ctrl };
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
