// Releases the platform devices of a worker thread that died, from the main thread of the same
// process. Only called once the thread has stopped (its Worker's "close" event), so nothing races.
//
// This reaches below the platform seam, which has no "release a device another thread opened"
// operation yet (proposed: Platform.releaseOrphan(record), see the pool's report). Until then:
// sim devices are closed through native/simxen.c's process-wide handle table, real Xen devices by
// munmap()ing each recorded mapping and closing the fds (the kernel then unbinds every port and
// drops every grant map, as when a process exits).
import { simxen } from "../sim/hypervisor/native.ts";
import type { Pointer } from "bun:ffi";
import { peerio } from "../net/peerio-lib.ts";
import { DEVICES_SIM, DEVICES_XEN, RESOURCE_MEMORY, RESOURCE_TAP_IO, clearDeviceRecord, readDeviceRecord } from "./device-registry.ts";
import { workerNative } from "./worker-native.ts";

export interface ReclaimResult {
  /** What was released, for the log line. */
  released: string[];
}

export function reclaimWorkerDevices(words: Int32Array): ReclaimResult {
  const rec = readDeviceRecord(words);
  const released: string[] = [];
  if (rec.kind === DEVICES_SIM) {
    // sx_gdev_close unmaps every mapping the device made; sx_edev_close unbinds every port
    // (frontends' ports return to unbound) and closes the device's sockets.
    if (rec.gntdevHandle >= 0 && simxen().sx_gdev_close(rec.gntdevHandle) === 0) released.push(`grant device (${rec.mappings.length} mappings)`);
    if (rec.evtchnHandle >= 0 && simxen().sx_edev_close(rec.evtchnHandle) === 0) released.push("event-channel device");
  } else if (rec.kind === DEVICES_XEN) {
    const n = workerNative();
    for (const m of rec.mappings) if (n.qw_munmap(m.addr, m.pages * 4096) === 0) released.push(`mapping of ${m.pages} pages`);
    if (rec.gntdevFd >= 0 && n.qw_close(rec.gntdevFd) === 0) released.push("grant device fd");
    if (rec.evtchnFd >= 0 && n.qw_close(rec.evtchnFd) === 0) released.push("event-channel device fd");
  }
  // The data path's own: entries are removed as the worker frees them, so what is left was held.
  let memory = 0;
  let taps = 0;
  for (const r of rec.resources) {
    if (r.kind === RESOURCE_MEMORY) {
      peerio().pio_free(r.addr as Pointer);
      memory++;
    } else if (r.kind === RESOURCE_TAP_IO) {
      peerio().pio_close(r.addr as Pointer);
      taps++;
    }
  }
  if (memory) released.push(`${memory} data-path buffers`);
  if (taps) released.push(`${taps} TAP I/O contexts`);
  clearDeviceRecord(words);
  return { released };
}
