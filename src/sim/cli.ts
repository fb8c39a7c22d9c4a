// `npm run sim -- up|down|xl ...`: the simulated Xen host's command line.
import { defaultSimDir, dirOption, get, parse, UsageError } from "./toolstack/args.ts";
import { HostError, startHost, stopHost } from "./toolstack/host.ts";
import { libxlLogTo } from "./toolstack/libxl-log.ts";
import { ToolstackError } from "./toolstack/toolstack.ts";
import { xlMain, type Io } from "./toolstack/xl.ts";

const HELP = `usage: sim COMMAND [--dir DIR] ...

The simulated Xen host: a xenstored daemon, a hypervisor in /dev/shm, and an xl-like toolstack.

Commands:
  up     [--dir DIR]   start xenstored (detached) and the hypervisor; print the dom0 socket
  down   [--dir DIR]   destroy all guests, stop xenstored, remove the hypervisor's shared memory
  xl     [--dir DIR] COMMAND ...   xl's create, destroy, list, network-attach, network-detach
                       (sim xl --help for details)

--dir DIR: the host's run directory (default: $XDG_RUNTIME_DIR/qnicd-sim, else /tmp/qnicd-sim-<uid>).
`;

const UP_HELP = `usage: sim up [--dir DIR]

Starts the simulated host in DIR: initialises the hypervisor, starts xenstored as a detached daemon
(log in DIR/xenstored/log), waits until it answers, writes dom0's name and domid like xen-init-dom0,
and prints the dom0 socket (what XENSTORED_PATH should name). Does nothing if it is already up.
`;

const DOWN_HELP = `usage: sim down [--dir DIR]

Destroys every guest domain (libxl's removal, without waiting on backends that never claimed a
vif), stops xenstored (SIGTERM via its pid file, waits for it to exit), removes the hypervisor's
shared memory and event-channel sockets. Leaves nothing running or mapped.
`;

export async function main(argv: string[], io: Io): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    if (!cmd || cmd === "--help" || cmd === "-h" || cmd === "help") {
      io.out(HELP);
      return cmd ? 0 : 2;
    }
    if (cmd === "xl") {
      // --dir may come before or after the xl command; everything else is xl's.
      const xlArgs: string[] = [];
      let dirRaw: string | undefined;
      for (let i = 0; i < rest.length; i++) {
        const a = rest[i]!;
        if (a === "--dir") {
          dirRaw = rest[++i];
          if (dirRaw === undefined) throw new UsageError(`--dir needs a value: expected ${dirOption.expected}`);
        } else if (a.startsWith("--dir=")) dirRaw = a.slice(6);
        else xlArgs.push(a);
      }
      const dir = dirRaw === undefined ? defaultSimDir() : get(parse(["--dir", dirRaw], { dir: dirOption }), { dir: dirOption }, "dir", "");
      return await xlMain(dir, xlArgs, io);
    }
    if (cmd !== "up" && cmd !== "down") throw new UsageError(`unknown command ${JSON.stringify(cmd)}: expected up, down or xl (see --help)`);
    const specs = { dir: dirOption };
    const p = parse(rest, specs);
    if (p.help) {
      io.out(cmd === "up" ? UP_HELP : DOWN_HELP);
      return 0;
    }
    if (p.positionals.length) throw new UsageError(`${cmd}: unexpected argument ${JSON.stringify(p.positionals[0])}`);
    const dir = get(p, specs, "dir", defaultSimDir());
    if (cmd === "up") {
      const s = await startHost(dir);
      io.out(`${s.alreadyRunning ? "already running" : "started"}: xenstored pid ${s.pid}, run directory ${s.dir}`);
      io.out(`dom0 xenstore socket: ${s.socketPath}`);
      io.out(`export XENSTORED_PATH=${s.socketPath}`);
      return 0;
    }
    const r = await stopHost(dir, { log: libxlLogTo(io.err) });
    for (const w of r.warnings) io.err(`sim down: ${w}`);
    io.out(`stopped: ${r.destroyed.length ? `destroyed ${r.destroyed.join(", ")}; ` : ""}nothing left running in ${dir}`);
    return r.warnings.length ? 1 : 0;
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`sim${cmd === "xl" ? " xl" : cmd ? ` ${cmd}` : ""}: ${e.message}`);
      return 2;
    }
    if (e instanceof ToolstackError || e instanceof HostError) {
      io.err(e.message);
      return 1;
    }
    io.err(`sim ${cmd}: ${(e as Error).message}`);
    return 1;
  }
}

if (import.meta.main) {
  const code = await main(process.argv.slice(2), {
    out: (l) => process.stdout.write(`${l}\n`),
    err: (l) => process.stderr.write(`${l}\n`),
  });
  process.exit(code);
}
