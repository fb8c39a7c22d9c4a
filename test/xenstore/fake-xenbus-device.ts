// A stand-in for /dev/xen/xenbus in front of the sim xenstored, holding the client to the Linux
// driver's contract (drivers/xen/xenbus/xenbus_dev_frontend.c). The client's fd is one end of a
// SOCK_SEQPACKET socketpair, so every write() the client makes arrives here as one record, and
// each record must be exactly one whole message of at most 4096 bytes, header included: the
// driver drops whatever follows a message in the same write and never answers an oversized one,
// so anything else is recorded as a violation (and dropped, as the driver would). Replies and
// watch events come back cut into small pieces, as the driver queues headers and bodies apart and a
// read returns whatever is queued.
import { dlopen, FFIType } from "bun:ffi";
import { closeSync, writeSync } from "node:fs";
import { createConnection, type Socket } from "node:net";
import type { DeviceFileOps } from "../../src/xenstore/index.ts";

const AF_UNIX = 1;
const SOCK_SEQPACKET = 5;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;

const libc = dlopen("libc.so.6", {
  socketpair: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
  read: { args: [FFIType.i32, FFIType.ptr, FFIType.u64], returns: FFIType.i64 },
}).symbols;

export class FakeXenbusDevice {
  /** Records that were not exactly one whole message within the driver's buffer. */
  readonly violations: string[] = [];
  /** Sizes of the client's write() calls, in order. */
  readonly writes: number[] = [];
  opens = 0;
  private dev = -1;
  private upstream: Socket | undefined;
  private timer: ReturnType<typeof setInterval> | undefined;
  private readonly buf = new Uint8Array(65536);
  /** Pieces for the client that did not fit in the socket yet (many tiny records fill it fast). */
  private outbox: Uint8Array[] = [];

  /** `pieceSize` bytes at a time back to the client (1: a byte per record). */
  constructor(
    private readonly xenstoredSocket: string,
    private readonly pieceSize = 5,
  ) {}

  readonly file: DeviceFileOps = {
    open: () => this.open(),
    write: (fd, bytes) => writeSync(fd, bytes),
    close: (fd) => closeSync(fd),
  };

  private open(): number {
    this.closeDeviceEnd();
    const fds = new Int32Array(2);
    if (libc.socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) !== 0) throw new Error("socketpair failed");
    this.opens++;
    this.dev = fds[1]!;
    const dev = this.dev;
    // The kernel's own xenstore connection, shared by every opener; here one per open.
    const up = createConnection({ path: this.xenstoredSocket });
    this.upstream = up;
    up.on("data", (chunk: Buffer) => {
      if (this.dev !== dev) return;
      for (let off = 0; off < chunk.length; off += this.pieceSize) this.outbox.push(chunk.subarray(off, Math.min(chunk.length, off + this.pieceSize)));
      this.flush();
    });
    up.on("error", () => {});
    this.timer ??= setInterval(() => this.pump(), 1);
    return fds[0]!;
  }

  private flush(): void {
    while (this.outbox.length > 0 && this.dev >= 0) {
      try {
        writeSync(this.dev, this.outbox[0]!);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "EAGAIN") return;
        throw e;
      }
      this.outbox.shift();
    }
  }

  private pump(): void {
    if (this.dev < 0) return;
    this.flush();
    for (;;) {
      const n = Number(libc.read(this.dev, this.buf, this.buf.length));
      if (n <= 0) return; // -1 EAGAIN: nothing queued; 0: the client closed its end
      const rec = this.buf.slice(0, n);
      this.writes.push(n);
      const len = n >= 16 ? new DataView(rec.buffer).getUint32(12, true) : -1;
      if (n < 16) this.violations.push(`a write of ${n} bytes: not even a header`);
      else if (n > 4096) this.violations.push(`a write of ${n} bytes: over the driver's 4096-byte buffer`);
      else if (16 + len !== n) this.violations.push(`a write of ${n} bytes holding a message of ${16 + len}`);
      else this.upstream?.write(rec);
    }
  }

  /** The device goes away under the client (its read sees end of file). */
  closeDeviceEnd(): void {
    if (this.dev >= 0) closeSync(this.dev);
    this.dev = -1;
    this.outbox = [];
    this.upstream?.destroy();
    this.upstream = undefined;
  }

  close(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.closeDeviceEnd();
  }
}
