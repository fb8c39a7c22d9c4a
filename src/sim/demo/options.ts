// The demo's command line. Few options on purpose: the demo shows qnicd, it does not configure it.
export const DEMO_USAGE = `usage: npm run demo [-- --once] [-- --peer auto|tap|switch]
  --once          exit (cleaning up) after the pings instead of waiting for Ctrl-C: tests and CI
  --peer auto     TAPs on a private Linux bridge when we may create one (root, /dev/net/tun),
                  else the in-daemon switch (the default)
  --peer tap      TAPs on a private bridge, or fail
  --peer switch   the in-daemon switch even where a bridge could be made
`;

export interface DemoOptions {
  once: boolean;
  peer: "auto" | "tap" | "switch";
  help: boolean;
}

export class DemoUsageError extends Error {
  override name = "DemoUsageError";
}

export function parseDemoArgs(argv: readonly string[]): DemoOptions {
  const o: DemoOptions = { once: false, peer: "auto", help: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--once") o.once = true;
    else if (a === "--help" || a === "-h") o.help = true;
    else if (a === "--peer" || a.startsWith("--peer=")) {
      const v = a === "--peer" ? argv[++i] : a.slice("--peer=".length);
      if (v !== "auto" && v !== "tap" && v !== "switch") throw new DemoUsageError(`demo: --peer: expected auto, tap or switch, got ${JSON.stringify(v ?? "")}`);
      o.peer = v;
    } else throw new DemoUsageError(`demo: unknown option ${JSON.stringify(a)}: try --once, --peer auto|tap|switch or --help`);
  }
  return o;
}
