// One owner per backend: before touching xenstore a daemon takes an exclusive flock(2) on a file
// named after what it serves. A second qnicd for the same backend (started by mistake, or a
// restart racing the old process) is refused before it can close or re-attach the first one's
// vifs. The kernel drops the lock with the process, so a crashed daemon never blocks its successor.
import { dlopen, FFIType } from "bun:ffi";
import { closeSync, mkdirSync, openSync, readFileSync, ftruncateSync, writeSync } from "node:fs";
import { join } from "node:path";

const LOCK_EX = 2;
const LOCK_NB = 4;

let libc: { flock: (fd: number, op: number) => number } | undefined;
function flock(fd: number, op: number): number {
  libc ??= dlopen("libc.so.6", { flock: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 } }).symbols as { flock: (fd: number, op: number) => number };
  return libc.flock(fd, op);
}

export class OwnerLockBusyError extends Error {
  override name = "OwnerLockBusyError";
  constructor(
    message: string,
    readonly holderPid: number | null,
  ) {
    super(message);
  }
}

export class OwnerLock {
  private constructor(
    readonly path: string,
    private fd: number,
  ) {}

  /**
   * Takes the lock `<dir>/<name>.lock` or throws OwnerLockBusyError naming the holder's pid (read
   * from the file, where every holder writes its own). `what` names the backend in the message.
   */
  static acquire(dir: string, name: string, what: string): OwnerLock {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const path = join(dir, `${name}.lock`);
    // Opened without truncation: the holder's pid must still be readable when we lose the race.
    const fd = openSync(path, "a+", 0o600);
    if (flock(fd, LOCK_EX | LOCK_NB) !== 0) {
      closeSync(fd);
      let pid: number | null = null;
      try {
        const m = /^(\d+)/.exec(readFileSync(path, "utf8"));
        pid = m ? Number(m[1]) : null;
      } catch {
        // unreadable: say so below
      }
      throw new OwnerLockBusyError(
        `qnicd: another qnicd${pid ? ` (pid ${pid})` : ""} already serves ${what} (lock ${path}): stop it first (systemctl stop qnicd, or kill ${pid ?? "<pid>"}); a second daemon would take its vifs from under it`,
        pid,
      );
    }
    ftruncateSync(fd, 0);
    writeSync(fd, `${process.pid}\n`, 0);
    return new OwnerLock(path, fd);
  }

  /** Lets go (the file stays: removing it would let a third daemon lock a different inode). */
  release(): void {
    if (this.fd < 0) return;
    closeSync(this.fd);
    this.fd = -1;
  }
}
