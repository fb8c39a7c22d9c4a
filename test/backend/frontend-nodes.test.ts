// Frontend nodes are guest-written: each is parsed strictly and a bad one is a fatal error naming it.
import { expect, test } from "bun:test";
import { VifFatalError } from "../../src/backend/errors.ts";
import { readFrontendConfig } from "../../src/backend/frontend-nodes.ts";

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
  ["multi-queue-num-queues", "2", 22, /guest requested 2 queues, but qnicd serves exactly 1/],
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
