// Is our stderr the systemd journal? systemd sets $JOURNAL_STREAM to "<device>:<inode>" of the
// stream it connected a service's stdout/stderr to (systemd.exec(5), "Environment variables in
// spawned processes"); a process should only treat stderr as the journal when stderr's own
// fstat() matches, since the variable is inherited by children whose stderr may go elsewhere.
import { fstatSync } from "node:fs";

export function stderrIsJournal(env: Record<string, string | undefined> = process.env, fd = 2): boolean {
  const m = /^(\d+):(\d+)$/.exec(env.JOURNAL_STREAM ?? "");
  if (!m) return false;
  try {
    const st = fstatSync(fd, { bigint: true });
    return st.dev === BigInt(m[1]!) && st.ino === BigInt(m[2]!);
  } catch {
    return false; // no stderr at all
  }
}

/** syslog(3) priorities journald reads from a "<N>" line prefix (sd-daemon(3)). */
export const SYSLOG_PRIORITY = { error: 3, warn: 4, info: 6, debug: 7 } as const;
