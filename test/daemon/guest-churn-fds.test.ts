// 30 guests that each exchanged traffic with the daemon, created and destroyed: the daemon's fds
// return to what they were before them. The first time the daemon notifies a guest, the sim's
// event-channel device connects a socket to that guest's device (native/simxen.c peer_socket());
// those sockets once stayed open for every guest that had come and gone (57 -> 86 fds over 30).
import { afterEach, expect, test } from "bun:test";
import { fdDiff, lifecycleLoop, type Rig, startRig } from "../../bench/lib/sim-daemon.ts";
import { buildArp, type Netfront } from "../../src/sim/netfront/index.ts";
import { until } from "../backend/sim-host.ts";

const GUESTS = 30;

let rig: Rig | undefined;
afterEach(async () => {
  await rig?.close();
  rig = undefined;
});

/** The guest sends one frame and sees the daemon's answer arrive as an event (the daemon notified it). */
async function exchange(nf: Netfront): Promise<void> {
  const events = nf.counters.events;
  const mac = new Uint8Array([0x00, 0x16, 0x3e, 0, 0, 1]);
  const ip = new Uint8Array([10, 0, 0, 1]);
  if (!nf.send(buildArp(1, mac, ip, new Uint8Array(6), new Uint8Array([10, 0, 0, 2])))) throw new Error("netfront refused the frame");
  await until("the daemon's tx response event", () => nf.counters.txRspOkay + nf.counters.txRspDropped > 0 && nf.counters.events > events, 10_000);
}

test(`${GUESTS} guests that each got an event from the daemon: its fds return to the baseline`, async () => {
  rig = await startRig({ workers: 1 });
  const { warm, after, cycles } = await lifecycleLoop(rig, { cycles: GUESTS, warmup: 3, eachConnected: (_domid, nf) => exchange(nf) });
  console.log(`guest churn: ${cycles.length} guests with traffic, daemon fds ${warm.fds} -> ${after.fds}`);
  expect(cycles.length).toBe(GUESTS);
  // A socket's name is its inode, new for every reconnect: compare sockets by number, files by name.
  const named = (targets: string[]) => targets.map((t) => (t.startsWith("socket:") ? "socket" : t));
  expect(fdDiff(named(after.fdTargets), named(warm.fdTargets))).toEqual([]);
  expect(after.fds).toBe(warm.fds);
  const { exitCode, hostWarnings } = await rig.close();
  expect(exitCode).toBe(0);
  expect(hostWarnings).toEqual([]);
}, 120_000);
