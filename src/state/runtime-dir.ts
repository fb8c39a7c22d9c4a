// Where what outlives one qnicd process lives: the owner lock and the vif journals. It must survive
// a restart of the daemon and must not survive a reboot of the host (a journal describes rings of
// guests that a reboot destroys), so it is tmpfs: /run/qnicd (systemd's RuntimeDirectory=qnicd,
// kept across restarts by RuntimeDirectoryPreserve=yes) as root, $XDG_RUNTIME_DIR/qnicd otherwise,
// and on the simulated host its own run directory, which lives exactly as long as that host.
import { join } from "node:path";
import { tmpdir } from "node:os";

export interface RuntimeDirInput {
  platform: "xen" | "sim";
  /** --runtime-dir, if given. */
  runtimeDir: string | null;
  simDir: string;
  env: Readonly<Record<string, string | undefined>>;
  uid: number;
}

export function runtimeDirFor(i: RuntimeDirInput): string {
  if (i.runtimeDir) return i.runtimeDir;
  if (i.platform === "sim") return join(i.simDir, "qnicd");
  // systemd sets RUNTIME_DIRECTORY to the unit's RuntimeDirectory (a colon-separated list).
  const fromSystemd = i.env.RUNTIME_DIRECTORY?.split(":")[0];
  if (fromSystemd) return fromSystemd;
  if (i.uid === 0) return "/run/qnicd";
  return join(i.env.XDG_RUNTIME_DIR ?? tmpdir(), "qnicd");
}

/**
 * The name this daemon's lock and journals carry: the platform and the backend path it serves, so
 * daemons serving different backend domains or types never block or read each other.
 */
export function backendStateName(platform: "xen" | "sim", backendRoot: string): string {
  return `${platform}${backendRoot.replace(/\//g, "-")}`;
}
