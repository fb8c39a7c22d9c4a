// Frontend nodes are guest-written: each is parsed strictly and a bad one is a fatal error naming it.
import { expect, test } from "bun:test";
import { VifFatalError } from "../../src/backend/errors.ts";
import { readFrontendConfig } from "../../src/backend/frontend-nodes.ts";
import { backendFeatures } from "../../src/backend/features.ts";

const good: Record<string, string> = {
  "tx-ring-ref": "8",
  "rx-ring-ref": "9",
  "event-channel": "5",
  "request-rx-copy": "1",
  "feature-rx-notify": "1",
  "feature-sg": "1",
};
const backendMac = { mac: "00:16:3E:01:02:03" };

function read(front: Record<string, string | undefined>, back: Record<string, string | undefined> = backendMac) {
  return readFrontendConfig({ frontend: async (k) => front[k], backend: async (k) => back[k] });
}

async function fatal(front: Record<string, string | undefined>, back?: Record<string, string | undefined>): Promise<VifFatalError> {
  try {
    await read(front, back);
  } catch (e) {
    expect(e).toBeInstanceOf(VifFatalError);
    return e as VifFatalError;
  }
  throw new Error("expected a fatal error");
}

test("a Linux netfront's nodes give the connect parameters", async () => {
  expect(await read(good)).toEqual({
    txRingRef: 8,
    rxRingRef: 9,
    txEvtchn: 5,
    rxEvtchn: 5,
    queues: [{ txRingRef: 8, rxRingRef: 9, txEvtchn: 5, rxEvtchn: 5 }],
    splitEventChannels: false,
    mac: "00:16:3e:01:02:03",
    features: {
      "feature-rx-notify": true,
      "feature-sg": false,
      "feature-gso-tcpv4": false,
      "feature-gso-tcpv6": false,
      "feature-ipv6-csum-offload": false,
      "feature-no-csum-offload": false,
    },
  });
});

test.each([
  ["tx-ring-ref", "abc", 22, /reading tx-ring-ref: "abc" is not a grant reference/],
  ["tx-ring-ref", "-1", 22, /tx-ring-ref/],
  ["tx-ring-ref", " 8", 22, /tx-ring-ref/],
  ["rx-ring-ref", "4294967296", 22, /rx-ring-ref/],
  ["rx-ring-ref", undefined, 2, /reading rx-ring-ref: the frontend did not write it/],
  ["event-channel", undefined, 2, /reading event-channel/],
  ["event-channel", "0", 22, /event-channel/],
  ["event-channel", "0x5", 22, /event-channel/],
  ["request-rx-copy", "0", 95, /frontend doesn't support rx-copy/],
  ["request-rx-copy", undefined, 95, /frontend doesn't support rx-copy/],
  ["request-rx-copy", "yes", 22, /request-rx-copy/],
  ["multi-queue-num-queues", "2", 22, /guest requested 2 queues, exceeding the maximum of 1/],
  ["multi-queue-num-queues", "two", 22, /reading multi-queue-num-queues: "two" is not a queue count/],
  ["multi-queue-num-queues", "0", 22, /guest requested 0 queues/],
] as const)("%s = %p is fatal (errno %d)", async (key, value, errno, message) => {
  const e = await fatal({ ...good, [key]: value });
  expect(e.errno).toBe(errno);
  expect(e.message).toMatch(message);
});

test("one queue named explicitly is fine", async () => {
  expect((await read({ ...good, "multi-queue-num-queues": "1" })).txRingRef).toBe(8);
});

test("split channels need both halves", async () => {
  const e = await fatal({ ...good, "event-channel": undefined, "event-channel-tx": "3" });
  expect(e.message).toMatch(/event-channel-rx/);
  expect(await read({ ...good, "event-channel-tx": "3", "event-channel-rx": "4" })).toMatchObject({ txEvtchn: 3, rxEvtchn: 4, splitEventChannels: true });
});

test("the toolstack's B/mac wins over the guest's F/mac; F/mac is validated when used", async () => {
  expect((await read({ ...good, mac: "00:16:3e:aa:aa:aa" })).mac).toBe("00:16:3e:01:02:03");
  expect((await read({ ...good, mac: "00:16:3e:aa:aa:aa" }, {})).mac).toBe("00:16:3e:aa:aa:aa");
  expect((await fatal({ ...good, mac: "00:16:3e:aa:aa" }, {})).message).toMatch(/frontend mac: "00:16:3e:aa:aa" is not/);
  expect((await fatal(good, {})).message).toMatch(/neither B\/mac nor F\/mac/);
  expect((await fatal(good, { mac: "zz" })).message).toMatch(/backend mac/);
});

test("a long hostile value is cut in the message and stays on one line", async () => {
  const e = await fatal({ ...good, "tx-ring-ref": `1\n${"x".repeat(4000)}` });
  expect(e.message.length).toBeLessThan(200);
  expect(e.message).not.toContain("\n");
});

test("unreadable optional flags count as not requested, as Linux's xenbus_read_unsigned", async () => {
  expect((await read({ ...good, "feature-rx-notify": "lots" })).features["feature-rx-notify"]).toBe(false);
});

/** A frontend with `n` queues, each keeping its keys under queue-<i>/ (Linux netfront's layout). */
function queued(n: number, split = false): Record<string, string | undefined> {
  const f: Record<string, string | undefined> = { "multi-queue-num-queues": String(n), "request-rx-copy": "1" };
  for (let q = 0; q < n; q++) {
    f[`queue-${q}/tx-ring-ref`] = String(100 + 2 * q);
    f[`queue-${q}/rx-ring-ref`] = String(101 + 2 * q);
    if (split) {
      f[`queue-${q}/event-channel-tx`] = String(10 + 2 * q);
      f[`queue-${q}/event-channel-rx`] = String(11 + 2 * q);
    } else f[`queue-${q}/event-channel`] = String(10 + q);
  }
  return f;
}

function readOffering(maxQueues: number, front: Record<string, string | undefined>) {
  return readFrontendConfig({ frontend: async (k) => front[k], backend: async (k) => backendMac[k as "mac"] }, backendFeatures(false, { maxQueues }));
}

test("each of up to multi-queue-max-queues queues is read from its queue-<n> directory", async () => {
  const c = await readOffering(4, queued(4, true));
  expect(c.queues).toEqual([0, 1, 2, 3].map((q) => ({ txRingRef: 100 + 2 * q, rxRingRef: 101 + 2 * q, txEvtchn: 10 + 2 * q, rxEvtchn: 11 + 2 * q })));
  expect(c.splitEventChannels).toBe(true);
  expect(c.txRingRef).toBe(100); // the top-level fields are queue 0's
  const single = await readOffering(4, queued(2));
  expect(single.queues.map((q) => [q.txEvtchn, q.rxEvtchn])).toEqual([[10, 10], [11, 11]]);
  expect(single.splitEventChannels).toBe(false);
});

test.each([
  ["more queues than offered", (f: Record<string, string | undefined>) => ({ ...f, "multi-queue-num-queues": "5" }), 22, /guest requested 5 queues, exceeding the maximum of 4/],
  ["zero queues", (f: Record<string, string | undefined>) => ({ ...f, "multi-queue-num-queues": "0" }), 22, /guest requested 0 queues/],
  ["a non-decimal queue count", (f: Record<string, string | undefined>) => ({ ...f, "multi-queue-num-queues": "0x2" }), 22, /multi-queue-num-queues: "0x2" is not a queue count/],
  ["a queue directory without its rx-ring-ref", (f: Record<string, string | undefined>) => ({ ...f, "queue-1/rx-ring-ref": undefined }), 2, /reading queue-1\/rx-ring-ref: the frontend did not write it/],
  ["a queue directory without any event channel", (f: Record<string, string | undefined>) => ({ ...f, "queue-2/event-channel": undefined }), 2, /reading queue-2\/event-channel/],
  ["a queue's split channel without its rx half", (f: Record<string, string | undefined>) => ({ ...f, "queue-3/event-channel-tx": "40" }), 2, /queue-3\/event-channel-rx/],
] as const)("multi-queue: %s is fatal", async (_, edit, errno, message) => {
  try {
    await readOffering(4, edit(queued(4)));
  } catch (e) {
    expect(e).toBeInstanceOf(VifFatalError);
    expect((e as VifFatalError).errno).toBe(errno);
    expect((e as VifFatalError).message).toMatch(message);
    return;
  }
  throw new Error("expected a fatal error");
});

test("a single queue named explicitly keeps its keys at the top, as netback reads them", async () => {
  const c = await readOffering(4, { ...good, "multi-queue-num-queues": "1", "queue-0/tx-ring-ref": "77" });
  expect(c.queues).toEqual([{ txRingRef: 8, rxRingRef: 9, txEvtchn: 5, rxEvtchn: 5 }]);
});
