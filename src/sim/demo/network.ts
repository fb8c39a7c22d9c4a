// Where the demo's vifs go. A TAP per vif on a Linux bridge is what a real dom0 does, so that is
// the first choice; it needs root (CAP_NET_ADMIN), a usable /dev/net/tun and iproute2's `ip`.
// Everything the demo creates on the host is private to this run: the bridge is qndemo<pid>, the
// TAPs are <qnd+pid>-<domid>.<devid>, never the vif<domid>.<devid> a real backend on this host
// may hold, and the guests' subnet is one no interface here already uses.
import { spawnSync } from "node:child_process";
import { accessSync, constants, writeFileSync } from "node:fs";

export type NetworkChoice =
  | { mode: "tap"; why: string; bridge: string; prefix: string; hostIp: string; guestIps: [string, string]; prefixLen: 24 }
  | { mode: "switch"; why: string; prefix: string; guestIps: [string, string] };

export class NetworkError extends Error {
  override name = "NetworkError";
}

function ip(...args: string[]): { ok: boolean; out: string; err: string } {
  const r = spawnSync("ip", args, { encoding: "utf8" });
  return { ok: r.status === 0, out: r.stdout ?? "", err: (r.stderr ?? r.error?.message ?? "").trim().split("\n")[0] ?? "" };
}

/** Why this process cannot make TAPs and a bridge, or null when it can. */
function tapBlocker(): string | null {
  if (process.getuid?.() !== 0) return "not root (TAPs and a bridge need CAP_NET_ADMIN)";
  try {
    accessSync("/dev/net/tun", constants.R_OK | constants.W_OK);
  } catch (e) {
    return `/dev/net/tun is not usable (${(e as NodeJS.ErrnoException).code ?? "EACCES"})`;
  }
  if (spawnSync("ip", ["-V"], { stdio: "ignore" }).status !== 0) return "no `ip` command (iproute2) to make a bridge with";
  return null;
}

/** 10.213.<n>.0/24 with <n> from our pid, skipping any /24 an interface or route here already uses. */
function privateSubnet(): string {
  const inUse = ip("-4", "-o", "addr", "show").out + ip("-4", "route", "show").out;
  for (let k = 0; k < 250; k++) {
    const n = 1 + ((process.pid + k) % 250);
    if (!inUse.includes(`10.213.${n}.`)) return `10.213.${n}`;
  }
  throw new NetworkError("demo: every 10.213.x.0/24 subnet is in use on this host: cannot pick one for the guests");
}

/** Names private to this run (15 characters at most, as Linux wants). */
export function privateNames(pid = process.pid): { bridge: string; prefix: string } {
  return { bridge: `qndemo${pid}`, prefix: `qnd${pid.toString(36).slice(-4)}-` };
}

/**
 * Chooses TAP or switch and, for TAP, creates the bridge (up, with the host's address). Throws a
 * one-line NetworkError when --peer tap was asked for and cannot be had.
 */
export function setUpNetwork(want: "auto" | "tap" | "switch"): NetworkChoice {
  const { bridge, prefix } = privateNames();
  const switchIps: [string, string] = ["10.213.0.2", "10.213.0.3"];
  if (want === "switch") return { mode: "switch", why: "asked for with --peer switch", prefix, guestIps: switchIps };
  const blocker = tapBlocker();
  if (blocker) {
    if (want === "tap") throw new NetworkError(`demo: --peer tap: ${blocker}; run as root or use --peer switch`);
    return { mode: "switch", why: `no TAPs here: ${blocker}`, prefix, guestIps: switchIps };
  }
  const net = privateSubnet();
  if (ip("link", "show", "dev", bridge).ok) throw new NetworkError(`demo: an interface named ${bridge} already exists (a demo killed with SIGKILL?): remove it with 'ip link del ${bridge}'`);
  const add = ip("link", "add", bridge, "type", "bridge");
  if (!add.ok) {
    if (want === "tap") throw new NetworkError(`demo: --peer tap: cannot create bridge ${bridge}: ${add.err}`);
    return { mode: "switch", why: `creating a bridge failed (${add.err})`, prefix, guestIps: switchIps };
  }
  try {
    // No IPv6 on the bridge: its router solicitations and MLD reports would only be noise to the guests.
    try {
      writeFileSync(`/proc/sys/net/ipv6/conf/${bridge}/disable_ipv6`, "1");
    } catch {}
    for (const args of [["addr", "add", `${net}.1/24`, "dev", bridge], ["link", "set", "dev", bridge, "up"]]) {
      const r = ip(...args);
      if (!r.ok) throw new NetworkError(`demo: ip ${args.join(" ")}: ${r.err}`);
    }
  } catch (e) {
    removeBridge(bridge);
    throw e;
  }
  return {
    mode: "tap",
    why: "we are root and /dev/net/tun is usable",
    bridge,
    prefix,
    hostIp: `${net}.1`,
    guestIps: [`${net}.2`, `${net}.3`],
    prefixLen: 24,
  };
}

/** Deletes the bridge (its TAPs leave it when qnicd closes them). Returns an error line or null. */
export function removeBridge(bridge: string): string | null {
  if (!ip("link", "show", "dev", bridge).ok) return null;
  const r = ip("link", "del", bridge);
  return r.ok ? null : `removing bridge ${bridge}: ${r.err}`;
}

