// Test-only: QNICD_TEST_HOLD_BEFORE_PUBLISH="<n>:<marker file>" makes a worker stop for good at its
// n-th publish, after the responses were copied into the ring and before rsp_prod says so: the one
// moment a crash leaves response bytes where requests were. The restart tests kill the daemon there
// (the marker file says it is holding) and check that its successor neither re-reads those slots as
// requests nor loses the responses. Unset in production: publish() then pays one null check.
import { writeFileSync } from "node:fs";
import { setPublishHold } from "./back-ring.ts";

export const PUBLISH_HOLD_ENV = "QNICD_TEST_HOLD_BEFORE_PUBLISH";

export function installPublishHold(spec: string | undefined, worker: number): void {
  if (!spec) return;
  const m = /^(\d+):(.+)$/.exec(spec);
  if (!m) throw new Error(`${PUBLISH_HOLD_ENV}=${JSON.stringify(spec)} is not <n>:<marker file>`);
  let left = Number(m[1]);
  const marker = m[2];
  const parked = new Int32Array(new SharedArrayBuffer(4));
  setPublishHold(() => {
    if (--left > 0) return;
    writeFileSync(marker, `worker ${worker} holding before publish\n`);
    // Held until the process is killed: nothing else in this thread may run meanwhile.
    for (;;) Atomics.wait(parked, 0, 0);
  });
}
