// Framing and robustness: what arrives on the socket in odd shapes must never crash the daemon or
// disturb other connections.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { frame, RawClient, sleep, startTestHost, strings, text, XsOp, type TestHost } from "./helpers.ts";

let host: TestHost;
beforeEach(async () => {
  host = await startTestHost();
});
afterEach(async () => {
  await host.cleanup();
});

describe("wire framing", () => {
  test("replies echo req_id and tx_id and carry the op's type", async () => {
    const c = await host.dom0();
    const tx = await c.txStart();
    const id = c.send(XsOp.WRITE, "/x\0v", tx, 0xdeadbeef);
    const m = await c.reply(0xdeadbeef);
    expect(m).toMatchObject({ type: XsOp.WRITE, reqId: id, txId: tx });
    expect(text(m)).toBe("OK\0");
  });

  test("a request split byte by byte across writes is assembled", async () => {
    const c = await host.dom0();
    await c.write("/split", "abc");
    const bytes = frame(XsOp.READ, "/split\0", 77);
    for (const b of bytes) {
      c.writeRaw(Buffer.from([b]));
      await sleep(1);
    }
    const m = await c.reply(77);
    expect(text(m)).toBe("abc");
  });

  test("many requests in one write are all answered, in order", async () => {
    const c = await host.dom0();
    const frames = [];
    for (let i = 1; i <= 50; i++) frames.push(frame(XsOp.WRITE, `/many/n${i}\0${i}`, i));
    frames.push(frame(XsOp.DIRECTORY, "/many\0", 51));
    c.writeRaw(Buffer.concat(frames));
    const last = await c.reply(51);
    expect(strings(last)).toHaveLength(50);
    const order = c.log.map((m) => m.reqId);
    expect(order).toEqual([...Array(51).keys()].map((i) => i + 1));
  });

  test("len > 4096 closes that connection only", async () => {
    const bad = await host.dom0();
    const good = await host.dom0();
    const h = Buffer.alloc(16);
    h.writeUInt32LE(XsOp.READ, 0);
    h.writeUInt32LE(4097, 12);
    bad.writeRaw(h);
    await bad.closed;
    expect(bad.ended).toBe(true);
    await good.write("/still", "fine");
    expect(await good.read("/still")).toBe("fine");
  });

  test("a payload of exactly 4096 bytes is accepted", async () => {
    const c = await host.dom0();
    const path = "/big";
    const value = Buffer.alloc(4096 - path.length - 1, 0x41);
    await c.write(path, value);
    expect((await c.call(XsOp.READ, `${path}\0`)).payload.length).toBe(value.length);
  });

  test("a client disconnecting mid-request (half a header, half a payload) disturbs nobody", async () => {
    const other = await host.dom0();
    for (const cut of [7, 20]) {
      const c = await host.dom0();
      c.writeRaw(frame(XsOp.WRITE, "/half\0value", 1).subarray(0, cut));
      await sleep(20);
      c.close();
    }
    await sleep(20);
    expect(await other.err(XsOp.READ, "/half\0")).toBe("ENOENT");
    await other.write("/after", "1");
  });

  test("unknown ops, and ERROR / WATCH_EVENT sent as requests, answer ENOSYS", async () => {
    const c = await host.dom0();
    for (const op of [20, 23, 99, 0xffffffff, XsOp.WATCH_EVENT, XsOp.ERROR]) {
      expect(await c.err(op, "x\0")).toBe("ENOSYS");
    }
  });

  test("error replies are type ERROR with the errno name and a NUL", async () => {
    const c = await host.dom0();
    const m = await c.request(XsOp.READ, "/does/not/exist\0");
    expect(m.type).toBe(XsOp.ERROR);
    expect(text(m)).toBe("ENOENT\0");
  });

  test("payloads missing their NUL answer EINVAL", async () => {
    const c = await host.dom0();
    expect(await c.err(XsOp.READ, "/tool")).toBe("EINVAL");
    expect(await c.err(XsOp.WRITE, "/tool")).toBe("EINVAL");
    expect(await c.err(XsOp.MKDIR, "")).toBe("EINVAL");
    expect(await c.err(XsOp.RM, "/a\0/b\0")).toBe("EINVAL");
    expect(await c.err(XsOp.WATCH, "/a\0")).toBe("EINVAL");
    expect(await c.err(XsOp.GET_DOMAIN_PATH, "1")).toBe("EINVAL");
  });

  test("an unknown transaction id answers ENOENT for every transactional op", async () => {
    const c = await host.dom0();
    for (const op of [XsOp.READ, XsOp.WRITE, XsOp.MKDIR, XsOp.RM, XsOp.DIRECTORY, XsOp.GET_PERMS, XsOp.TRANSACTION_END]) {
      expect(await c.err(op, "/tool\0", 4242)).toBe("ENOENT");
    }
    // WATCH ignores tx_id.
    await c.call(XsOp.WATCH, "/tool\0t\0", 4242);
  });

  test("garbage bytes never crash the daemon", async () => {
    const other = await host.dom0();
    let seed = 12345;
    const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff);
    for (let round = 0; round < 20; round++) {
      const c = await host.dom0();
      const junk = Buffer.alloc(300);
      for (let i = 0; i < junk.length; i++) junk[i] = rand() & 0xff;
      // Keep the length field sane in half the rounds so the junk gets parsed as requests.
      if (round % 2 === 0) junk.writeUInt32LE(rand() % 200, 12);
      c.writeRaw(junk);
      await sleep(2);
      c.close();
    }
    await other.write("/alive", "yes");
    expect(await other.read("/alive")).toBe("yes");
  });
});

test("values are binary-safe, including NUL and high bytes", async () => {
  const c = await host.dom0();
  const v = Buffer.from([0, 1, 2, 255, 0, 128, 10, 0]);
  await c.write("/bin", v);
  expect(Buffer.compare((await c.call(XsOp.READ, "/bin\0")).payload, v)).toBe(0);
  const empty = Buffer.alloc(0);
  await c.write("/empty", empty);
  expect((await c.call(XsOp.READ, "/empty\0")).payload.length).toBe(0);
});

test("connections to a closed daemon fail, and socket file is gone", async () => {
  const path = host.xs.socketPath;
  await host.xs.close();
  await expect(RawClient.connect(path)).rejects.toThrow();
});
