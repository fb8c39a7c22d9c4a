// The simulated guest netfront: a library (createNetfront), a process (main.ts) and helpers to run
// that process for the toolstack (spawn.ts). See netfront.ts for what mirrors Linux and why.
export {
  createNetfront,
  LINUX_XENBUS_WAIT_MS,
  MAX_QUEUES_DEFAULT,
  type Netfront,
  type NetfrontOptions,
  type NetfrontEvent,
  type ConnectionInfo,
  type AdvertisedFeatures,
  type HostileQueueKeys,
  type QueueDepths,
  type QueueStats,
  type SendOptions,
} from "./netfront.ts";
export type { QueueInfo } from "./queue.ts";
export { flowHash, selectQueue } from "./flow-hash.ts";
export type { NetfrontCounters } from "./counters.ts";
export type { RxMeta } from "./rx-queue.ts";
export type { TxFrameOptions } from "./tx-queue.ts";
export { CtrlClient, CTRL_TIMEOUT_MS, DEFAULT_HASH_KEY, type CtrlHostility, type CtrlResult, type HashSetup } from "./ctrl-client.ts";
export { buildArp, buildIcmpEcho, createResponder, inetChecksum, parseIPv4, parseMac, formatIPv4, formatMac } from "./frames.ts";
export { startNetfrontGuest, stopNetfrontGuest, stopNetfrontGuests, runningNetfrontGuest, netfrontGuestFiles, type StartGuestOptions } from "./spawn.ts";
