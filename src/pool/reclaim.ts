// Releases the platform devices of a worker thread that died, from the main thread of the same
// process. Only called once the thread has stopped (its Worker's "close" event), so nothing races.
// The platform the worker ran on releases its devices from what the worker recorded
// (releaseOrphanedDevices); the data path's native memory and peer contexts are released here.
import type { Pointer } from "bun:ffi";
import { releaseOrphanedDevices, type PlatformConfig } from "../platform/index.ts";
import { peerio } from "../net/peerio-lib.ts";
import { releaseOrphanedPeer } from "../net/index.ts";
import { RESOURCE_MEMORY, RESOURCE_PEER, clearDeviceRecord, readDeviceRecord } from "./device-registry.ts";

export interface ReclaimResult {
  /** What was released, for the log line. */
  released: string[];
}

/** `platform`: the config the worker was started with (its devices were opened there). */
export function reclaimWorkerDevices(words: Int32Array, platform: PlatformConfig): ReclaimResult {
  const rec = readDeviceRecord(words);
  const released = rec.devices ? releaseOrphanedDevices(platform, rec.devices) : [];
  // The data path's own: entries are removed as the worker frees them, so what is left was held.
  let memory = 0;
  let peers = 0;
  for (const r of rec.resources) {
    if (r.kind === RESOURCE_MEMORY) {
      peerio().pio_free(r.addr as Pointer);
      memory++;
    } else if (r.kind === RESOURCE_PEER) {
      releaseOrphanedPeer(r.addr);
      peers++;
    }
  }
  if (memory) released.push(`${memory} data-path buffers`);
  if (peers) released.push(`${peers} peer I/O contexts`);
  clearDeviceRecord(words);
  return { released };
}
