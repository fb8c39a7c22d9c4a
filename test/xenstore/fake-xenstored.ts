// A scripted xenstored for client tests that need a misbehaving or slow server (replies out of
// order, held replies, a dropped connection). Behaviour against the real thing is tested against
// the sim xenstored in client.sim.test.ts.
import { createServer, type Server, type Socket } from "node:net";
import { encodeMessage, FrameDecoder, type XsMessage } from "../../src/xenstore/codec.ts";

export interface FakeConn {
  socket: Socket;
  send(m: XsMessage): void;
}

export interface FakeXenstored {
  path: string;
  received: XsMessage[];
  conns: FakeConn[];
  close(): Promise<void>;
}

/** `onMessage` decides what to answer; it may answer later (keep `conn`) or never. */
export async function startFake(path: string, onMessage: (m: XsMessage, conn: FakeConn) => void): Promise<FakeXenstored> {
  const received: XsMessage[] = [];
  const conns: FakeConn[] = [];
  const server: Server = createServer((socket) => {
    const dec = new FrameDecoder();
    const conn: FakeConn = { socket, send: (m) => socket.write(encodeMessage(m)) };
    conns.push(conn);
    socket.on("data", (chunk: Buffer) => {
      for (const m of dec.push(new Uint8Array(chunk))) {
        received.push(m);
        onMessage(m, conn);
      }
    });
    socket.on("error", () => {});
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return {
    path,
    received,
    conns,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of conns) c.socket.destroy();
        server.close(() => resolve());
      }),
  };
}
