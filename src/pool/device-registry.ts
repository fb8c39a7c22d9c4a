// What a worker has open at the platform, written into its mailbox's shared memory as it opens
// things, so that if the worker thread dies the main thread can release them: its platform devices
// live in this same process and a dead thread never closes them itself.
//
// The platform devices: each one's reclaimId and every mapping's address and size, which the
// platform's releaseOrphanedDevices turns back into a release (the pool never asks which platform).
// Also the data path's native memory (frame batches, grant-copy segments, rx queues: freed) and
// what its peers hold natively (Peer.reclaimAddress: releaseOrphanedPeer), which a dead thread
// would leak too.
import type { OrphanedDevices } from "../platform/types.ts";
import { MAP_TABLE_WORD, REGISTRY_WORD } from "./mailbox.ts";

/** DEVICES_RECORDED while the worker holds its devices, DEVICES_NONE before and after. */
const R_STATE = REGISTRY_WORD + 0;
const R_EVTCHN = REGISTRY_WORD + 1;
const R_GNTDEV = REGISTRY_WORD + 2;
// Words 3 and 4 are unused (they held the devices' fds before reclaimId said it for both platforms).
const R_MAX_MAPS = REGISTRY_WORD + 5;

const DEVICES_NONE = 0;
const DEVICES_RECORDED = 1;

/** Table entry kinds (word 3 of an entry; 0 = free). */
const E_MAPPING = 1;
export const RESOURCE_MEMORY = 2;
export const RESOURCE_PEER = 3;

export interface DeviceRecord {
  /** The platform devices still held, or null when the worker recorded none (or closed them itself). */
  devices: OrphanedDevices | null;
  /** Native memory (RESOURCE_MEMORY) and TAP contexts (RESOURCE_PEER) still held. */
  resources: { kind: number; addr: number }[];
}

/** The worker's side: record before use, forget after release. */
export class DeviceRegistryWriter {
  constructor(private readonly words: Int32Array, private readonly maxMaps: number) {
    Atomics.store(words, R_MAX_MAPS, maxMaps);
  }

  /** Records the worker's platform devices (their reclaimIds) as soon as they are open. */
  devices(d: { grantDevice: number; eventChannelDevice: number }): void {
    Atomics.store(this.words, R_EVTCHN, d.eventChannelDevice);
    Atomics.store(this.words, R_GNTDEV, d.grantDevice);
    Atomics.store(this.words, R_STATE, DEVICES_RECORDED);
  }

  /** After the worker closed its devices itself (clean exit): nothing left to reclaim. */
  clear(): void {
    Atomics.store(this.words, R_STATE, DEVICES_NONE);
  }

  /** Returns the entry to pass to removeMapping, or -1 if the table is full (the vif is refused). */
  addMapping(addr: number, pages: number): number {
    return this.add(E_MAPPING, addr, pages);
  }

  /** Records native memory or a TAP context before use; the entry for removeMapping, or -1 if full. */
  addResource(kind: typeof RESOURCE_MEMORY | typeof RESOURCE_PEER, addr: number): number {
    return this.add(kind, addr, 0);
  }

  private add(kind: number, addr: number, pages: number): number {
    for (let i = 0; i < this.maxMaps; i++) {
      const w = MAP_TABLE_WORD + 4 * i;
      if (Atomics.load(this.words, w + 3) !== 0) continue;
      Atomics.store(this.words, w, addr % 0x1_0000_0000 | 0);
      Atomics.store(this.words, w + 1, Math.floor(addr / 0x1_0000_0000) | 0);
      Atomics.store(this.words, w + 2, pages);
      Atomics.store(this.words, w + 3, kind);
      return i;
    }
    return -1;
  }

  removeMapping(entry: number): void {
    if (entry >= 0) Atomics.store(this.words, MAP_TABLE_WORD + 4 * entry + 3, 0);
  }
}

/** The main thread's side, once the worker thread is gone. */
export function readDeviceRecord(words: Int32Array): DeviceRecord {
  const maxMaps = Atomics.load(words, R_MAX_MAPS);
  const mappings: { addr: number; pages: number }[] = [];
  const resources: { kind: number; addr: number }[] = [];
  for (let i = 0; i < maxMaps; i++) {
    const w = MAP_TABLE_WORD + 4 * i;
    const kind = Atomics.load(words, w + 3);
    if (kind === 0) continue;
    const addr = (Atomics.load(words, w) >>> 0) + (Atomics.load(words, w + 1) >>> 0) * 0x1_0000_0000;
    if (kind === E_MAPPING) mappings.push({ addr, pages: Atomics.load(words, w + 2) });
    else resources.push({ kind, addr });
  }
  const recorded = Atomics.load(words, R_STATE) === DEVICES_RECORDED;
  return {
    devices: recorded ? { grantDevice: Atomics.load(words, R_GNTDEV), eventChannelDevice: Atomics.load(words, R_EVTCHN), mappings } : null,
    resources,
  };
}

export function clearDeviceRecord(words: Int32Array): void {
  Atomics.store(words, R_STATE, DEVICES_NONE);
  const maxMaps = Atomics.load(words, R_MAX_MAPS);
  for (let i = 0; i < maxMaps; i++) Atomics.store(words, MAP_TABLE_WORD + 4 * i + 3, 0);
}
