// Each connected queue's journal (src/state/vif-journal.ts) on the backend's side: written at
// connect, one per queue, and removed at disconnect, with queue journals an earlier qnicd left for
// the vif removed at its connect, those of other vifs left alone. Removal needs no directory
// listing per vif (one at the first removal, for what an earlier qnicd left): a listing per connect
// made connecting N vifs read O(N^2) directory entries.
import { afterEach, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { XenbusState as S } from "../../src/xen/xenbus-state.ts";
import { queueNodes } from "./scripted-frontend.ts";
import { startBackendHarness, type BackendHarness } from "./harness.ts";
import { until } from "./sim-host.ts";

let h: BackendHarness | undefined;
let dir: string | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});


test("a connect writes one journal per queue and removes an earlier qnicd's extra queue journals for that vif only; a disconnect removes them all", async () => {
  dir = mkdtempSync(join(tmpdir(), "qnicd-journals-"));
  h = await startBackendHarness({ maxQueues: 4, journalDir: dir });
  const { domid, fronts } = await h.guest("alice", 2);
  // What an earlier qnicd that served vif<domid>.0 with four queues and vif<domid>.1 with two left.
  const left = [`vif${domid}.0.q2.journal`, `vif${domid}.0.q3.journal`, `vif${domid}.1.q1.journal`];
  for (const name of left) writeFileSync(join(dir, name), "");
  const f = fronts[0]!;
  await f.connect({ extra: queueNodes(2) });
  await f.waitBackend(S.Connected);
  expect(readdirSync(dir).sort()).toEqual([`vif${domid}.0.journal`, `vif${domid}.0.q1.journal`, `vif${domid}.1.q1.journal`]);
  await f.setState(S.Closing);
  await f.waitBackend(S.Closing);
  await until("vif.0's journals removed", () => !existsSync(join(dir!, `vif${domid}.0.journal`)), 5000);
  expect(readdirSync(dir).sort()).toEqual([`vif${domid}.1.q1.journal`]);
  // Connected again with one queue: one journal; the other vif's stray is removed at its own connect.
  await f.setState(S.Initialising);
  await f.waitBackend(S.InitWait);
  await f.connect({ extra: { "multi-queue-num-queues": null } });
  await f.waitBackend(S.Connected);
  await fronts[1]!.connect();
  await fronts[1]!.waitBackend(S.Connected);
  expect(readdirSync(dir).sort()).toEqual([`vif${domid}.0.journal`, `vif${domid}.1.journal`]);
});
