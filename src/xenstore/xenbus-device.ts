// xenstore through the kernel: /dev/xen/xenbus, the way in for a domain where xenstored does not
// run (a driver domain, or dom0 with xenstored in a stub domain). Same wire protocol as the socket;
// what differs is how the bytes travel (Linux drivers/xen/xenbus/xenbus_dev_frontend.c):
//
// - write(): the driver gathers bytes in one buffer of XENSTORE_PAYLOAD_MAX (4096) bytes, header
//   included, and acts on a message when its last byte has arrived; anything after that message in
//   the same write() is thrown away, and a message larger than the buffer fails with EINVAL or
//   E2BIG and no reply ever comes. So each message goes in one write() of its own, and the client
//   refuses a message over 4096 bytes before it is written.
// - read(): replies and watch events are queued as separate header and body pieces, and a read
//   returns as many queued bytes as fit: it is a byte stream (possibly a partial message), which
//   the connection's FrameDecoder reassembles. Watch events arrive on the same fd as replies,
//   carrying our token; the driver answers WATCH/UNWATCH itself with "OK" and our req_id.
// - opened O_NONBLOCK, the fd is pollable (POLLIN when something is queued), which is how Bun's
//   stream reader waits on it without a thread.
// - close(): the driver ends our open transactions and removes our watches.
import { closeSync, constants, openSync, statSync, writeSync } from "node:fs";
import { XENSTORE_PAYLOAD_MAX } from "../xen/xs-wire.ts";
import { XenstoreError } from "./errors.ts";
import type { TransportFactory } from "./transport.ts";

export const XENBUS_DEVICE = "/dev/xen/xenbus";

/** The driver's buffer holds the whole message, header included. */
export const XENBUS_DEVICE_MESSAGE_MAX = XENSTORE_PAYLOAD_MAX;

/** The file operations the transport uses; tests stand a fake device in for the real one. */
export interface DeviceFileOps {
  open(path: string): number;
  /** One write(2); returns the bytes written. */
  write(fd: number, bytes: Uint8Array): number;
  close(fd: number): void;
}

const realFile: DeviceFileOps = {
  open: (path) => openSync(path, constants.O_RDWR | constants.O_NONBLOCK),
  write: (fd, bytes) => writeSync(fd, bytes),
  close: (fd) => closeSync(fd),
};

/** True when `path` names a character device (a xenbus device rather than xenstored's socket). */
export function isCharacterDevice(path: string): boolean {
  try {
    return statSync(path).isCharacterDevice();
  } catch {
    return false;
  }
}

export function xenbusDeviceTransport(path: string = XENBUS_DEVICE, file: DeviceFileOps = realFile): TransportFactory {
  return async (handlers) => {
    const fd = file.open(path); // ENOENT, EACCES, ...: Connection.open reports it with the path
    const reader = Bun.file(fd).stream().getReader();
    let closed = false;
    const finish = (err?: Error) => {
      if (closed) return;
      closed = true;
      // Bun's reader does not own the fd: stop it first, then close the fd ourselves.
      void reader
        .cancel()
        .catch(() => {})
        .finally(() => file.close(fd));
      handlers.closed(err);
    };
    void (async () => {
      try {
        for (;;) {
          const r = await reader.read();
          if (r.done) return finish(new Error(`${path} reached end of file`));
          if (!closed) handlers.data(r.value);
        }
      } catch (e) {
        finish(e as Error);
      }
    })();
    return {
      endpoint: path,
      write: (bytes) => {
        if (closed) return;
        if (bytes.length > XENBUS_DEVICE_MESSAGE_MAX) {
          throw new XenstoreError(
            "E2BIG",
            `a xenstore message of ${bytes.length} bytes does not fit through ${path} (at most ${XENBUS_DEVICE_MESSAGE_MAX} bytes with its header)`,
          );
        }
        try {
          // The driver copies the whole buffer and returns its length; a short count never
          // happens short of a fault, but the rest would still belong to the same message.
          for (let off = 0; off < bytes.length; ) {
            const n = file.write(fd, bytes.subarray(off));
            if (n <= 0) throw new Error(`write to ${path} wrote nothing`);
            off += n;
          }
        } catch (e) {
          finish(e as Error);
        }
      },
      close: () => finish(),
    };
  };
}
