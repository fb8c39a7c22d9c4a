// `qnicd [--name VALUE ...]` (`npm run qnicd -- ...` from a checkout): the daemon's entry point. Settings problems and startup
// failures are one line on stderr (exit 2 and 1); SIGINT/SIGTERM stop it cleanly (exit 0), leaving
// every vif to the next qnicd (--on-exit keep, what `systemctl restart` needs) or closing them all
// (--on-exit close). Under systemd (Type=notify) it says READY=1 once serving, STOPPING=1 on stop.
// First: its evaluation marks the end of module loading (startup-clock.ts).
import { StartupClock } from "./startup-clock.ts";
import { ConfigError, helpText, isHelpRequested, loadConfig, type Config } from "./config/index.ts";
import { startDaemon, type Daemon } from "./daemon.ts";
import { sdNotify } from "./systemd/notify.ts";
import { versionLine } from "./build-info.ts";

const startup = new StartupClock({ fromExec: true });
const argv = process.argv.slice(2);
if (argv.includes("--version")) {
  process.stdout.write(`${versionLine()}\n`);
  process.exit(0);
}
if (isHelpRequested(argv)) {
  process.stdout.write(helpText());
  process.exit(0);
}

let config: Config;
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
  sdNotify("STOPPING=1");
  // Still starting: the startup path below stops it as soon as it is up.
  if (!daemon) return;
  await daemon.stop({ keepVifs: config.onExit === "keep" });
  process.exit(0);
}
for (const sig of ["SIGINT", "SIGTERM"] as const) process.on(sig, () => void shutdown(sig));

try {
  startup.mark("settings");
  daemon = await startDaemon(config, { startup });
} catch (e) {
  process.stderr.write(`${(e as Error).message}\n`);
  process.exit(1);
}
if (stopping) {
  await daemon.stop({ keepVifs: config.onExit === "keep" });
  process.exit(0);
}
sdNotify(`READY=1\nSTATUS=serving ${daemon.backend.bus.root}, ${daemon.vifs().length} vifs`);
