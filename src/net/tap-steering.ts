// Guest-rx queue selection on a multi-queue TAP by the frontend's hash (netback's
// xenvif_select_queue; see src/net/steering-program.ts for the program). One per TAP that has a
// configuration: its map fd stays open to take later configurations; the program, once attached,
// is held by the TAP itself. Algorithm NONE (the default, and what a fresh connect or a restarted
// qnicd starts from) detaches it: tun then spreads flows by its own flow hash, as netback leaves
// the choice to the kernel's netdev_pick_tx. Needs CAP_BPF (or root) besides CAP_NET_ADMIN; where
// bpf(2) is refused the caller reports one line and the kernel's choice stays.
import { dlopen, FFIType, ptr } from "bun:ffi";
import { constants as os } from "node:os";
import { nativeLibraryPath } from "../native/lib.ts";
import { steeringProgram, steeringValue, STEERING_VALUE_BYTES, type SteeringConfig } from "./steering-program.ts";

type SteeringLib = ReturnType<typeof openLib>;
function openLib() {
  return dlopen(nativeLibraryPath("steering"), {
    qnicd_steer_map_create: { args: [FFIType.u32], returns: FFIType.i32 },
    qnicd_steer_map_set: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
    qnicd_steer_prog_load: { args: [FFIType.ptr, FFIType.u32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    qnicd_tap_steering: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
  }).symbols;
}
let lib: SteeringLib | undefined;
let closeFd: ((fd: number) => number) | undefined;

const errnoNames = Object.fromEntries(Object.entries(os.errno).map(([k, v]) => [v, k])) as Record<number, string>;
const errnoName = (n: number) => errnoNames[n] ?? `errno ${n}`;

/** A bpf(2) or ioctl failure, with what failed and the errno's name (the caller adds the vif). */
export class SteeringError extends Error {
  override name = "SteeringError";
}

export class TapSteering {
  private readonly lib: SteeringLib;
  private mapFd = -1;
  private attached = false;

  constructor(private readonly tapFd: number) {
    this.lib = lib ??= openLib();
    closeFd ??= dlopen(nativeLibraryPath("tap"), { qnicd_fd_close: { args: [FFIType.i32], returns: FFIType.i32 } }).symbols.qnicd_fd_close;
  }

  /** Steers by `c` from now on (the map is replaced whole), or detaches the program for null. Throws SteeringError. */
  apply(c: SteeringConfig | null): void {
    if (c === null) {
      this.detach();
      return;
    }
    const value = steeringValue(c);
    if (this.mapFd < 0) {
      const fd = this.lib.qnicd_steer_map_create(STEERING_VALUE_BYTES);
      if (fd < 0) throw new SteeringError(`creating its eBPF map: ${errnoName(-fd)}${-fd === os.errno.EPERM ? " (qnicd needs CAP_BPF or root for this)" : ""}`);
      this.mapFd = fd;
    }
    const rc = this.lib.qnicd_steer_map_set(this.mapFd, ptr(value));
    if (rc < 0) throw new SteeringError(`writing its eBPF map: ${errnoName(-rc)}`);
    if (this.attached) return;
    const insns = steeringProgram(this.mapFd);
    const log = new Uint8Array(4096);
    const prog = this.lib.qnicd_steer_prog_load(ptr(insns), insns.length / 8, ptr(log), log.length);
    if (prog < 0) {
      const why = new TextDecoder().decode(log.subarray(0, log.indexOf(0))).trim().split("\n").pop() ?? "";
      throw new SteeringError(`loading its eBPF program: ${errnoName(-prog)}${why ? ` (verifier: ${why})` : ""}`);
    }
    const at = this.lib.qnicd_tap_steering(this.tapFd, prog);
    closeFd!(prog);
    if (at < 0) throw new SteeringError(`attaching its eBPF program (TUNSETSTEERINGEBPF): ${errnoName(-at)}`);
    this.attached = true;
  }

  /** Back to tun's own flow hash (also clears a program an earlier qnicd left on a persistent TAP). */
  detach(): void {
    const rc = this.lib.qnicd_tap_steering(this.tapFd, -1);
    this.attached = false;
    this.close();
    if (rc < 0) throw new SteeringError(`detaching its eBPF program (TUNSETSTEERINGEBPF): ${errnoName(-rc)}`);
  }

  /** Lets go of the map (the TAP keeps an attached program and its map alive). */
  close(): void {
    if (this.mapFd >= 0) closeFd!(this.mapFd);
    this.mapFd = -1;
    // A later apply() makes a new map, so it needs a program of its own.
    this.attached = false;
  }
}
