// Foreground daemon: `bun src/sim/xenstored/main.ts --dir DIR`. Writes its pid file once the socket
// accepts connections, logs to stderr, and on SIGTERM/SIGINT saves the tree, removes its sockets
// and pid file and exits 0.
import { renameSync, unlinkSync, writeFileSync } from "node:fs";
import { simPaths } from "../paths.ts";
import { startXenstored } from "./server.ts";

function usage(): never {
  process.stderr.write("usage: main.ts --dir DIR\n");
  process.exit(2);
}

function parseDir(argv: string[]): string {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--dir") return argv[i + 1] ?? usage();
    if (a.startsWith("--dir=")) return a.slice("--dir=".length);
  }
  usage();
}

const dir = parseDir(process.argv.slice(2));
const paths = simPaths(dir);
const log = (line: string) => process.stderr.write(`xenstored[${process.pid}]: ${line}\n`);

const xs = await startXenstored({ dir, log });

let stopping = false;
async function stop(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  log(`${signal}: shutting down`);
  await xs.close();
  try {
    unlinkSync(paths.xenstoredPidFile);
  } catch {}
  process.exit(0);
}
// Before the pid file: whoever sees the pid file may signal at once, and a signal that comes
// before its handler would kill the process without saving the tree (a loaded CI machine hit this).
process.on("SIGTERM", () => void stop("SIGTERM"));
process.on("SIGINT", () => void stop("SIGINT"));
// Written beside it and renamed over it: whoever sees the pid file reads the whole pid (written in
// place, a reader could find the file created and still empty: a CI run read 0).
const pidTmp = `${paths.xenstoredPidFile}.${process.pid}.tmp`;
writeFileSync(pidTmp, `${process.pid}\n`);
renameSync(pidTmp, paths.xenstoredPidFile);
