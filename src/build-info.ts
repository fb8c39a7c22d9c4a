// Which qnicd is running: the version from package.json and, when it runs from a git checkout, the
// commit. Served as qnicd_build_info on /metrics and printed by --version. A binary built without
// git (or an installed copy) reports no commit rather than a wrong one.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import pkg from "../package.json" with { type: "json" };

export interface BuildInfo {
  version: string;
  /** Full commit hash, with "-dirty" when the checkout has uncommitted changes; null outside a checkout. */
  commit: string | null;
}

let cached: BuildInfo | undefined;

/** What --version prints: "qnicd 0.1.0 (commit 1a2b...)", or without the commit outside a checkout. */
export function versionLine(info: BuildInfo = buildInfo()): string {
  return `qnicd ${info.version}${info.commit ? ` (commit ${info.commit})` : ""}`;
}

export function buildInfo(): BuildInfo {
  cached ??= { version: pkg.version, commit: gitCommit(join(import.meta.dir, "..")) };
  return cached;
}

function gitCommit(root: string): string | null {
  if (!existsSync(join(root, ".git"))) return null;
  try {
    const head = spawnSync("git", ["-C", root, "rev-parse", "HEAD"], { encoding: "utf8", timeout: 2000 });
    if (head.status !== 0 || !/^[0-9a-f]{40}$/.test(head.stdout.trim())) return null;
    const dirty = spawnSync("git", ["-C", root, "status", "--porcelain", "--untracked-files=no"], { encoding: "utf8", timeout: 2000 });
    return head.stdout.trim() + (dirty.status === 0 && dirty.stdout.trim() !== "" ? "-dirty" : "");
  } catch {
    return null; // no git on this machine
  }
}
