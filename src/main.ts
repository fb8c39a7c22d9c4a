// `bun run qnicd [--name VALUE ...]`: the daemon's entry point. Settings problems and startup
// failures are one line on stderr (exit 2 and 1); SIGINT/SIGTERM stop it cleanly (exit 0).
import { ConfigError, helpText, isHelpRequested, loadConfig } from "./config/index.ts";
import { startDaemon, type Daemon } from "./daemon.ts";

const argv = process.argv.slice(2);
if (isHelpRequested(argv)) {
  process.stdout.write(helpText());
  process.exit(0);
}

let config;
try {
  config = loadConfig({ argv, env: process.env });
} catch (e) {
  process.stderr.write(`${e instanceof ConfigError ? e.message : `qnicd: ${(e as Error).message}`}\n`);
  process.exit(2);
}

let daemon: Daemon | undefined;
let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) {
    process.stderr.write(`qnicd: ${signal} again: exiting without finishing the cleanup\n`);
    process.exit(1);
  }
  stopping = true;
  // Still starting: the startup path below stops it as soon as it is up.
  if (!daemon) return;
  await daemon.stop();
  process.exit(0);
}
for (const sig of ["SIGINT", "SIGTERM"] as const) process.on(sig, () => void shutdown(sig));

try {
  daemon = await startDaemon(config);
} catch (e) {
  process.stderr.write(`${(e as Error).message}\n`);
  process.exit(1);
}
if (stopping) {
  await daemon.stop();
  process.exit(0);
}
