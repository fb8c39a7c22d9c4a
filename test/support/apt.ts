// Installs Debian packages a test needs (real clients for conformance tests), once per machine.
//
// - Fast when everything is present: one dpkg-query call, no lock, no apt.
// - `apt-get update` runs at most once per process (package lists rarely change during a run).
// - Concurrent callers (parallel test files, other processes) are serialised by flock(1) on a lock
//   file, and apt itself is told to wait for dpkg's own lock instead of failing, because other
//   engineers' tests may be installing packages at the same time.
import { spawnSync } from "node:child_process";

const LOCK_FILE = "/tmp/qnicd-apt.lock";
let updatedThisProcess = false;

/** Packages from `pkgs` that dpkg does not report as fully installed ("ii"). */
export function missingDebPackages(pkgs: string[]): string[] {
  if (pkgs.length === 0) return [];
  const r = spawnSync("dpkg-query", ["-W", "-f=${Package} ${db:Status-Abbrev}\\n", ...pkgs], {
    encoding: "utf8",
  });
  const installed = new Set<string>();
  for (const line of (r.stdout ?? "").split("\n")) {
    const [name, status] = line.trim().split(/\s+/);
    if (name && status === "ii") installed.add(name.replace(/:.*$/, ""));
  }
  return pkgs.filter((p) => !installed.has(p));
}

export function ensureDebPackages(pkgs: string[]): void {
  if (missingDebPackages(pkgs).length === 0) return;
  if (process.getuid?.() !== 0) {
    throw new Error(`ensureDebPackages: missing ${missingDebPackages(pkgs).join(" ")} and not root`);
  }
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const aptOpts = "-o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold";
  // Re-check under the lock: another process may have installed them while we waited.
  const script = [
    "set -e",
    `missing=""; for p in ${pkgs.map(q).join(" ")}; do`,
    `  s=$(dpkg-query -W -f='\${db:Status-Abbrev}' "$p" 2>/dev/null || true)`,
    `  case "$s" in ii*) ;; *) missing="$missing $p";; esac`,
    "done",
    '[ -z "$missing" ] && exit 0',
    updatedThisProcess ? ":" : `apt-get ${aptOpts} update -qq`,
    `apt-get ${aptOpts} install -y -qq --no-install-recommends $missing`,
  ].join("\n");
  const r = spawnSync("flock", ["-w", "900", LOCK_FILE, "sh", "-c", script], {
    encoding: "utf8",
    env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    timeout: 1_000_000,
  });
  // Even if the re-check under the lock found nothing to do, lists are fresh enough for this process.
  updatedThisProcess = true;
  if (r.status !== 0) {
    throw new Error(`ensureDebPackages(${pkgs.join(" ")}) failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  }
  const still = missingDebPackages(pkgs);
  if (still.length) throw new Error(`ensureDebPackages: still missing after install: ${still.join(" ")}`);
}
