// The host side of each vif: the interface (or port) its frames go to. The backend asks for one
// when a vif is realized (before InitWait, so libxl's vif-bridge hotplug script finds the
// interface) and gives it back when the device goes away. Chosen by --peer.
import type { PeerHandle } from "./peer.ts";
import type { SteeringConfig } from "./steering-program.ts";

/** What the toolstack asked for a vif's host side (libxl's vif keys: B/mtu, B/bridge), validated. */
export interface PeerSettings {
  /** The interface's MTU; absent: its bridge's (as vif-bridge does), else the kernel's default. */
  mtu?: number;
  /** The bridge the vif's config names (B/bridge), for a provisioner that joinsBridges. */
  bridge?: string;
}

export interface PeerProvisioner {
  readonly kind: PeerHandle["kind"];
  /** Whether create() puts each interface on a bridge itself (then PeerSettings.bridge is honoured). */
  readonly joinsBridges: boolean;
  /** Creates the peer named `name` (already validated as an interface name). Throws PeerError. */
  create(name: string, settings?: PeerSettings): PeerHandle;
  /**
   * The host side of queue `queue` (1 and up) of a multi-queue vif whose queue 0 is `peer`: a TAP's
   * next queue fd on the same interface, a switch port of its own. Throws PeerError.
   */
  openQueue(peer: PeerHandle, queue: number): PeerHandle;
  /** Gives back what openQueue() returned (the interface itself stays). Idempotent. */
  closeQueue(queue: PeerHandle): void;
  /**
   * Where the host side picks a multi-queue vif's guest-rx queue itself (a TAP: the kernel picks
   * the queue fd a frame is read from), makes it pick by the frontend's hash configuration from now
   * on, or by its own choice again for null. Absent where the workers pick (the switch). Throws
   * PeerError.
   */
  steer?(peer: PeerHandle, config: SteeringConfig | null): void;
  /** Releases a peer this provisioner created. Idempotent. */
  destroy(peer: PeerHandle): void;
  /** Releases every peer still held. */
  close(): void;
  /**
   * Lets go of every peer held without ending what is meant to outlive the daemon (persistent
   * TAPs): the daemon is stopping so that its successor takes the vifs over (--on-exit keep).
   */
  detach(): void;
  /**
   * Ends a peer that an earlier daemon left behind for a vif that is gone (its journal named it).
   * Never touches an interface this provisioner would not have created.
   */
  removeLeftover(name: string): void;
}

/** errno: what the vif's error node says; message: one line naming the peer and the cure. */
export class PeerError extends Error {
  override name = "PeerError";
  constructor(
    message: string,
    readonly errno: number,
  ) {
    super(message);
  }
}

/**
 * For hosts without TAP rights (tests, the simulated host, unprivileged runs): a name and no fd.
 * "switch" means the workers' in-process switch carries the frames; "null" drops them.
 */
export class PlaceholderProvisioner implements PeerProvisioner {
  private readonly held = new Set<string>();
  readonly joinsBridges = false;
  constructor(readonly kind: "switch" | "null") {}

  create(name: string): PeerHandle {
    this.held.add(name);
    return { kind: this.kind, name, fd: -1 };
  }
  /**
   * A port per queue on the switch: each learns the guest's MAC when it sends, so frames to the
   * guest go to the queue it last sent from (the switch has no per-flow queue choice).
   */
  openQueue(peer: PeerHandle, queue: number): PeerHandle {
    return { kind: this.kind, name: queueName(peer.name, queue), fd: -1 };
  }
  closeQueue(): void {
    // nothing held: the worker closes the port
  }
  destroy(peer: PeerHandle): void {
    this.held.delete(peer.name);
  }
  close(): void {
    this.held.clear();
  }
  detach(): void {
    this.held.clear();
  }
  removeLeftover(): void {
    // in-process peers end with the process
  }
  /** Names currently held (for tests and /vifs). */
  names(): string[] {
    return [...this.held];
  }
}

/**
 * The switch port of a vif's queue `queue`: "<vif>:q<N>" (':' is in no interface name, so the
 * switch can tell a vif's queues from single-queue vifs: native/l2switch.c floods each vif once).
 */
export function queueName(name: string, queue: number): string {
  return queue === 0 ? name : `${name}:q${queue}`;
}
