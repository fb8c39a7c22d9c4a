// Worker half of EventWaker: blocks in poll() on the event-channel fd (off the main thread, so the
// guest's xenstore and stdin keep running) and posts one message per wake-up. It then waits to be
// re-armed: the main thread drains the device first, otherwise poll() would report the same
// readiness again and again. ctl[0] = armed, ctl[1] = stop.
import { simxen } from "../hypervisor/native.ts";

declare const self: Worker;

self.onmessage = (e: MessageEvent<{ fd: number; sab: SharedArrayBuffer }>) => {
  const { fd, sab } = e.data;
  const ctl = new Int32Array(sab);
  const lib = simxen();
  for (;;) {
    if (Atomics.load(ctl, 1)) break;
    if (Atomics.load(ctl, 0) === 0) {
      Atomics.wait(ctl, 0, 0, 50);
      continue;
    }
    // Bounded so a stop request is seen within 50 ms.
    if (lib.sx_poll(fd, 50) > 0) {
      Atomics.store(ctl, 0, 0);
      postMessage("event");
    }
  }
  postMessage("stopped");
};
