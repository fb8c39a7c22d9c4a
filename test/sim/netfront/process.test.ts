import { afterEach, expect, test } from "bun:test";
import { join } from "node:path";
import { buildArp, parseIPv4, parseMac } from "../../../src/sim/netfront/frames.ts";
import { playNetback, startHost, TestBackend, until } from "./harness.ts";

const MAIN = join(import.meta.dir, "../../../src/sim/netfront/main.ts");
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A guest process whose stdout JSON lines are collected as they come. */
function spawnGuest(args: string[]) {
  const proc = Bun.spawn([process.execPath, MAIN, ...args], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  const lines: any[] = [];
  void (async () => {
    let buf = "";
    const dec = new TextDecoder();
    for await (const chunk of proc.stdout as ReadableStream<Uint8Array>) {
      buf += dec.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        lines.push(JSON.parse(buf.slice(0, nl)));
        buf = buf.slice(nl + 1);
      }
    }
  })();
  const stderr = new Response(proc.stderr).text();
  return {
    proc,
    lines,
    stderr,
    cmd: (s: string) => {
      (proc.stdin as import("bun").FileSink).write(`${s}\n`);
      (proc.stdin as import("bun").FileSink).flush();
    },
    next: (pred: (l: any) => boolean, what: string, from = 0) => until(what, () => lines.slice(from).find(pred), 10_000),
  };
}

test("the guest process connects, sends and receives frames, answers ARP, resets on SIGUSR1 and exits on command", async () => {
  const host = await startHost();
  cleanups.push(() => host.close());
  const domid = await host.guest("g", "00:16:3e:00:00:02");
  const be = new TestBackend(host, domid);
  cleanups.push(() => be.close());
  const player = await playNetback(be);
  cleanups.push(() => player.stop());
  const g = spawnGuest(["--dir", host.dir, "--domid", String(domid), "--devid", "0", "--ip", "10.0.0.2", "--reset-on", "SIGUSR1", "--reset-wait-ms", "2000"]);
  cleanups.push(() => {
    g.proc.kill("SIGKILL");
  });

  const started = await g.next((l) => l.event === "started", "started");
  expect(started).toMatchObject({ domid, devid: 0, frontend: be.F, backend: be.B, backendDomid: 0 });
  const first = await g.next((l) => l.event === "connected", "connected");
  expect(first).toMatchObject({ split: true, mac: "00:16:3e:00:00:02", numQueues: 1 });
  expect(await host.xs.read(`${be.F}/tx-ring-ref`)).toBe(String(first.txRingRef));

  // tx: a frame given on stdin arrives through the ring.
  const frame = Uint8Array.from({ length: 64 }, (_, i) => i);
  g.cmd(`send ${Buffer.from(frame).toString("hex")} flags=2 offset=10`);
  expect(await g.next((l) => l.event === "sent", "sent")).toEqual({ event: "sent", ok: true, len: 64 });
  const got = await until("tx frame", () => be.drainTx()[0]);
  expect(got.frame).toEqual(frame);
  expect([got.flags, got.offset]).toEqual([2, 10]);

  // rx: a frame the backend writes comes out on stdout.
  await until("rx posted", () => be.rxAvailable() > 0);
  const inbound = Uint8Array.from({ length: 100 }, (_, i) => 255 - i);
  be.postRx(inbound, { offset: 2 });
  const rx = await g.next((l) => l.event === "rx", "rx");
  expect(rx).toEqual({ event: "rx", len: 100, flags: 0, slots: 1, hex: Buffer.from(inbound).toString("hex") });

  // The responder answers ARP for its address.
  const peerMac = parseMac("00:16:3e:00:00:01")!;
  be.postRx(buildArp(1, peerMac, parseIPv4("10.0.0.1")!, new Uint8Array(6), parseIPv4("10.0.0.2")!));
  const reply = await until("arp reply", () => be.drainTx()[0]);
  expect(reply.frame).toEqual(buildArp(2, parseMac("00:16:3e:00:00:02")!, parseIPv4("10.0.0.2")!, peerMac, parseIPv4("10.0.0.1")!));

  // SIGUSR1: the reset walk, then a fresh connection.
  const mark = g.lines.length;
  g.proc.kill("SIGUSR1");
  const second = await g.next((l) => l.event === "connected", "reconnected", mark);
  expect(g.lines.slice(mark).filter((l) => l.event === "state").map((l) => l.state)).toEqual([5, 6, 1, 4]);
  expect(second.txRingRef).not.toBe(first.txRingRef);

  g.cmd("stats");
  const stats = await g.next((l) => l.event === "stats", "stats");
  expect(stats).toMatchObject({ txPackets: 2, rxPackets: 2, arpReplies: 1, resets: 1, connects: 2, state: 4, backendState: 4, rxPosted: 256 });

  g.cmd("exit");
  expect(await g.proc.exited).toBe(0);
  expect(g.lines.at(-1)).toEqual({ event: "exit" });
  expect(await g.stderr).toContain("triggering reconnect on");
}, 30_000);

test("the guest process exits by itself when the toolstack removes its vif", async () => {
  const host = await startHost();
  cleanups.push(() => host.close());
  const domid = await host.guest("g");
  const be = new TestBackend(host, domid);
  cleanups.push(() => be.close());
  const player = await playNetback(be);
  cleanups.push(() => player.stop());
  const g = spawnGuest(["--dir", host.dir, "--domid", String(domid), "--devid", "0"]);
  cleanups.push(() => {
    g.proc.kill("SIGKILL");
  });
  await g.next((l) => l.event === "connected", "connected");
  await host.ts.networkDetach("g", "0");
  expect(await g.proc.exited).toBe(0);
  expect(g.lines.map((l) => l.event)).toContain("removed");
}, 30_000);

test("the guest process refuses to start without a configured vif", async () => {
  const host = await startHost();
  cleanups.push(() => host.close());
  const domid = await host.guest("g");
  const g = spawnGuest(["--dir", host.dir, "--domid", String(domid), "--devid", "7"]);
  expect(await g.proc.exited).toBe(1);
  expect(await g.stderr).toContain("no backend/backend-id");
});

test("a guest started with stdin closed keeps running, runs its --script once connected, and stops on SIGTERM", async () => {
  const host = await startHost();
  cleanups.push(() => host.close());
  const domid = await host.guest("g");
  const be = new TestBackend(host, domid);
  cleanups.push(() => be.close());
  const player = await playNetback(be);
  cleanups.push(() => player.stop());
  const script = join(host.dir, "guest.script");
  await Bun.write(script, "# say hello once connected\nsleep 20\nsend 00112233445566778899aabbccdd\nstats\n");
  const g = spawnGuest(["--dir", host.dir, "--domid", String(domid), "--devid", "0", "--script", script]);
  cleanups.push(() => {
    g.proc.kill("SIGKILL");
  });
  (g.proc.stdin as import("bun").FileSink).end();
  const got = await until("scripted frame", () => be.txMap && be.drainTx()[0], 10_000);
  expect(Buffer.from(got.frame).toString("hex")).toBe("00112233445566778899aabbccdd");
  expect(await g.next((l) => l.event === "stats", "stats")).toMatchObject({ txPackets: 1 });
  await Bun.sleep(100);
  expect(g.proc.exitCode).toBeNull();
  g.proc.kill("SIGTERM");
  expect(await g.proc.exited).toBe(0);
}, 30_000);

test("the guest process with --vcpus 2 --no-split-event-channels negotiates two queues of one channel each, reports both, and sends on the queue asked for", async () => {
  const host = await startHost();
  cleanups.push(() => host.close());
  const domid = await host.guest("g", "00:16:3e:00:00:03");
  const players = [new TestBackend(host, domid), new TestBackend(host, domid)];
  for (const p of players) cleanups.push(() => p.close());
  const g = spawnGuest(["--dir", host.dir, "--domid", String(domid), "--devid", "0", "--vcpus", "2", "--no-split-event-channels"]);
  cleanups.push(() => {
    g.proc.kill("SIGKILL");
  });
  await g.next((l) => l.event === "started", "started");
  await players[0]!.offer();
  await until("frontend Connected", async () => (await players[0]!.frontendState()) === 4);
  await players[1]!.connect({ dir: "queue-1", announce: false });
  await players[0]!.connect({ dir: "queue-0" });
  const conn = await g.next((l) => l.event === "connected", "connected");
  expect(conn).toMatchObject({ split: false, numQueues: 2 });
  expect(conn.queues.map((q: { dir: string; txPort: number; rxPort: number }) => [q.dir, q.txPort === q.rxPort])).toEqual([
    ["queue-0", true],
    ["queue-1", true],
  ]);
  expect(await host.xs.read(`${players[0]!.F}/queue-1/event-channel`)).toBe(String(conn.queues[1].txPort));

  const frame = Buffer.alloc(60, 0xab);
  g.cmd(`send ${frame.toString("hex")} queue=1`);
  await g.next((l) => l.event === "sent" && l.ok === true, "sent");
  await until("the frame on queue 1's ring", () => players[1]!.drainTx().length === 1);
  expect(players[0]!.drainTx()).toHaveLength(0);
  g.cmd("stats");
  const stats = await g.next((l) => l.event === "stats", "stats");
  expect(stats.queues.map((q: { id: number; counters: { txPackets: number } }) => [q.id, q.counters.txPackets])).toEqual([
    [0, 0],
    [1, 1],
  ]);
  expect(stats.txPackets).toBe(1);
  g.cmd("exit");
  expect(await g.proc.exited).toBe(0);
});

test("the guest process's --hostile-* flags write the queue keys Linux never does", async () => {
  const host = await startHost();
  cleanups.push(() => host.close());
  const domid = await host.guest("g", "00:16:3e:00:00:04");
  const be = new TestBackend(host, domid);
  cleanups.push(() => be.close());
  const g = spawnGuest(["--dir", host.dir, "--domid", String(domid), "--vcpus", "2", "--hostile-num-queues", "2x", "--hostile-omit", "queue-1/rx-ring-ref", "--hostile-omit", "queue-0/event-channel-rx"]);
  cleanups.push(() => {
    g.proc.kill("SIGKILL");
  });
  await g.next((l) => l.event === "started", "started");
  await be.offer();
  await until("frontend Connected", async () => (await be.frontendState()) === 4);
  expect(await host.xs.read(`${be.F}/multi-queue-num-queues`)).toBe("2x");
  expect((await host.xs.directory(`${be.F}/queue-0`)).sort()).toEqual(["event-channel-tx", "rx-ring-ref", "tx-ring-ref"]);
  expect((await host.xs.directory(`${be.F}/queue-1`)).sort()).toEqual(["event-channel-rx", "event-channel-tx", "tx-ring-ref"]);
});
