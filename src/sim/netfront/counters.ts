// Counters of the simulated netfront, per queue and summed per device, named after what Linux reports
// (rtnl_link_stats64: rx/tx packets, bytes, errors, dropped) plus ring-level ones that let backend
// tests see notification behaviour (how many times we kicked the backend, how many events came).
export interface NetfrontCounters {
  txPackets: number;
  txBytes: number;
  /** Frames dropped before reaching the ring: not connected, broken, backlog full (Linux tx_dropped). */
  txDropped: number;
  /** Tx responses by status: OKAY, ERROR (-1), DROPPED (-2). */
  txRspOkay: number;
  txRspError: number;
  txRspDropped: number;
  /** Tx pushes that had to notify the backend (RING_PUSH_REQUESTS_AND_CHECK_NOTIFY said so). */
  txNotifies: number;
  /** Tx pushes the backend's req_event let us skip notifying. */
  txNotifiesSuppressed: number;
  rxPackets: number;
  rxBytes: number;
  /** Bad rx responses (Linux rx_errors): bad status/offset, missing slots, bad extras, runts. */
  rxErrors: number;
  rxNotifies: number;
  rxNotifiesSuppressed: number;
  /** Event-channel events handled (after coalescing). */
  events: number;
  arpReplies: number;
  echoReplies: number;
  connects: number;
  resets: number;
  /** Grants the backend still had mapped when we tore a connection down (Linux defers these). */
  leakedGrants: number;
}

export function newCounters(): NetfrontCounters {
  return {
    txPackets: 0,
    txBytes: 0,
    txDropped: 0,
    txRspOkay: 0,
    txRspError: 0,
    txRspDropped: 0,
    txNotifies: 0,
    txNotifiesSuppressed: 0,
    rxPackets: 0,
    rxBytes: 0,
    rxErrors: 0,
    rxNotifies: 0,
    rxNotifiesSuppressed: 0,
    events: 0,
    arpReplies: 0,
    echoReplies: 0,
    connects: 0,
    resets: 0,
    leakedGrants: 0,
  };
}

const COUNTER_NAMES = Object.keys(newCounters()) as (keyof NetfrontCounters)[];

/** Adds every counter of `from` into `into` (a queue's counts folded into the device's on teardown). */
export function addCounters(into: NetfrontCounters, from: NetfrontCounters): void {
  for (const k of COUNTER_NAMES) into[k] += from[k];
}

/**
 * The device's totals as a live, read-only view: each field reads `own` (device-level counts and
 * the counts of queues already torn down) plus every live queue's. A caller may keep the object
 * and read it later, as it could the plain object this replaced; spreading or JSON-encoding it
 * gives the current numbers.
 */
export function totalsView(own: NetfrontCounters, queues: () => readonly NetfrontCounters[]): NetfrontCounters {
  const view = {} as NetfrontCounters;
  for (const k of COUNTER_NAMES) {
    Object.defineProperty(view, k, {
      enumerable: true,
      get: () => {
        let n = own[k];
        for (const q of queues()) n += q[k];
        return n;
      },
    });
  }
  return Object.freeze(view);
}
