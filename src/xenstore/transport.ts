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
      sock.once("connect", () => {
        opened = true;
        resolve({
          endpoint: path,
          write: (bytes) => {
            if (!closed) sock.write(bytes);
          },
          close: () => {
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
