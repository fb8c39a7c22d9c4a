// A real Worker flushes as fast as it can while this thread reads in a loop: every snapshot must be
// internally consistent. Without the seqlock, reads here catch a counter with one word updated and
// not the other, or tx_bytes from one flush and tx_packets from another.
import { expect, test } from "bun:test";
import { StatsArena, readVifStats } from "../../src/stats/index.ts";
import { FIRST_PACKET, TWO_32, rxBytesFor } from "./fixtures/stats-writer-worker.ts";
import { streamingWriter } from "./stats-writer.ts";

test("a reader racing a flushing worker only ever sees whole, consistent snapshots", async () => {
  const arena = StatsArena.create({ workers: 2, slotsPerWorker: 4 });
  const ref = arena.allocate(1);
  const writer = streamingWriter(arena, ref);

  const problems: string[] = [];
  let distinct = 0;
  let last = -1;
  let sawCarry = false;
  // Read until the worker has visibly moved on many times and carried tx_bytes into its high word;
  // the bound is on observations, not on time. Yielding now and then lets a worker error or the
  // test timeout end the loop if the worker never gets going.
  for (let reads = 1; distinct < 20_000 || !sawCarry; reads++) {
    if (reads % 10_000 === 0) await Bun.sleep(0);
    const s = readVifStats(arena, ref)!;
    if (s.tx_packets === 0) continue; // not started yet
    if (s.tx_bytes !== s.tx_packets * 64) problems.push(`tx_bytes ${s.tx_bytes} != 64 * tx_packets ${s.tx_packets}`);
    if (s.rx_bytes !== rxBytesFor(s.tx_packets)) problems.push(`rx_bytes ${s.rx_bytes} torn (tx_packets ${s.tx_packets})`);
    if (s.tx_packets < last) problems.push(`tx_packets went back from ${last} to ${s.tx_packets}`);
    if (s.tx_packets !== last) distinct++;
    last = s.tx_packets;
    if (s.tx_bytes >= TWO_32) sawCarry = true;
    if (problems.length >= 5) break;
  }
  const done = await writer.stop();

  expect(problems).toEqual([]);
  expect(last).toBeGreaterThan(FIRST_PACKET);
  // After the worker's last flush the reader sees its final totals.
  expect(readVifStats(arena, ref)!.tx_packets).toBe(done.txPackets);
});
