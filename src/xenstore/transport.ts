// The byte pipe under the xenstore connection. xenstored speaks the same protocol on its Unix
// socket and through /dev/xen/xenbus, so only the transports know which one is in use: this file
// has the socket, xenbus-device.ts the device (one write() per message).
import { createConnection, type Socket } from "node:net";

export interface TransportHandlers {
  data(chunk: Uint8Array): void;
  /** The pipe closed, for any reason. Called once. `error` is set when it broke. */
  closed(error?: Error): void;
}

export interface Transport {
  /** Human-readable endpoint for messages ("/run/xenstored/socket"). */
  readonly endpoint: string;
  write(bytes: Uint8Array): void;
  close(): void;
}

/** Opens a transport; rejects if the endpoint does not answer. */
export type TransportFactory = (handlers: TransportHandlers) => Promise<Transport>;

/** xenstored's Unix socket (what XENSTORED_PATH names). */
export function unixSocketTransport(path: string): TransportFactory {
  return (handlers) =>
    new Promise<Transport>((resolve, reject) => {
      const sock: Socket = createConnection({ path });
      let opened = false;
      let closed = false;
      const finish = (err?: Error) => {
        if (closed) return;
        closed = true;
        if (opened) handlers.closed(err);
      };
      // Messages written in one turn of the event loop leave in one socket write. A write per
      // message cost a system call and a wake-up of xenstored each: with 1000 vifs connecting
      // (~57 requests apiece) that was over 40 % of the daemon's main thread.
      let queued: Uint8Array[] = [];
      const flush = () => {
        const parts = queued;
        queued = [];
        if (closed || parts.length === 0) return;
        if (parts.length === 1) return void sock.write(parts[0]!);
        let n = 0;
        for (const p of parts) n += p.length;
        const all = new Uint8Array(n);
        n = 0;
        for (const p of parts) {
          all.set(p, n);
          n += p.length;
        }
        sock.write(all);
      };
      sock.once("connect", () => {
        opened = true;
        resolve({
          endpoint: path,
          write: (bytes) => {
            if (closed) return;
            if (queued.length === 0) setImmediate(flush);
            queued.push(bytes);
          },
          close: () => {
            flush();
            sock.destroy();
            finish();
          },
        });
      });
      sock.on("data", (chunk: Buffer) => {
        if (!closed) handlers.data(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length));
      });
      sock.on("error", (err) => {
        if (!opened) {
          closed = true;
          reject(err);
        } else finish(err);
      });
      sock.on("close", () => finish());
    });
}
