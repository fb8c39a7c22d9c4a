// `sim xl ...`: xl's commands on the simulated host, printing what xl prints where it matters
// (list's table, libxl's error lines, xl's one-line failures).
import * as v from "valibot";
import { simPaths } from "../paths.ts";
import { hypervisorInitialised } from "../hypervisor/index.ts";
import { XenstoreClient } from "../../xenstore/index.ts";
import { check, get, ipOption, netfrontOption, option, parse, schemas, UsageError, noWaitOption, type OptionSpec } from "./args.ts";
import { netfrontGuests } from "./guests.ts";
import { simHypervisor } from "./hypervisor.ts";
import { libxlLogTo } from "./libxl-log.ts";
import type { NicConfig } from "./nic.ts";
import { parseVifRate, VifRateError } from "./vif-rate.ts";
import { formatXlList, Toolstack, ToolstackError } from "./toolstack.ts";

export interface Io {
  out(line: string): void;
  err(line: string): void;
}

const nameArg = option({ expected: "a domain name (letters, digits, '_', '.', '-'; at most 64; not only digits)", schema: schemas.domainName });
const qualifierArg = option({ expected: "a domain name or domid", schema: v.pipe(v.string(), v.regex(/^[A-Za-z0-9_.-]{1,64}$/)) });

const createOpts = {
  vifs: option({ expected: "an integer from 0 to 64", schema: schemas.integer(0, 64) }),
  memory: option({ expected: "a size in MiB from 1 to 1024", schema: schemas.integer(1, 1024) }),
  vcpus: option({ expected: "an integer from 1 to 64", schema: schemas.integer(1, 64) }),
  "backend-type": option({ expected: "one of vif, qnic", schema: schemas.backendType }),
  // xl's vif `backend=` key: the domain (name or id) that serves the vifs, a driver domain.
  backend: qualifierArg,
  "no-wait": noWaitOption,
  netfront: netfrontOption,
  ip: ipOption,
};
const destroyOpts = { "no-wait": noWaitOption };
const attachOpts = {
  "backend-type": createOpts["backend-type"],
  "no-wait": noWaitOption,
  netfront: netfrontOption,
  ip: ipOption,
};

/** xl's vif settings accepted by network-attach (xl_parse.c parse_nic_config's common keys). */
const nicKeys: Record<string, OptionSpec<unknown>> = {
  mac: option({ expected: "a unicast MAC like 00:16:3e:12:34:56", schema: schemas.mac }),
  bridge: option({ expected: "a bridge name (1-15 characters, no '/', ':' or spaces)", schema: schemas.bridge }),
  mtu: option({ expected: "an integer from 68 to 65535", schema: schemas.integer(68, 65535) }),
  vifname: option({ expected: "an interface name (1-15 characters, no '/', ':' or spaces)", schema: schemas.ifname }),
  script: option({ expected: "an absolute path", schema: schemas.path }),
  backend: qualifierArg,
};

export const XL_HELP = `usage: sim xl [--dir DIR] COMMAND ...

Commands (as xl, on the simulated host):
  create NAME [--vifs N] [--memory MiB] [--vcpus N] [--backend-type vif|qnic] [--backend NAME|DOMID]
         [--no-wait] [--netfront [--ip A.B.C.D]]
      Create a domain with N vifs (default 0). Like libxl, waits up to 10 s for each vif's backend
      to reach InitWait, and destroys the domain if none answers. --no-wait skips that wait (for use
      before a backend is running). --backend-type qnic names the backend directory like QEMU does.
      --backend (xl's vif backend= key) puts the vifs' backends in that domain, a driver domain,
      with libxl's permissions; the default is dom0.
      --netfront boots the guest: a Linux-like netfront process per vif (the first one answers ARP
      and ping on --ip); its events and log are in DIR/guests/. Each netfront asks for
      min(8, --vcpus) queues (default 1 vCPU), as Linux's xen-netfront does; each queue posts
      256 pages (1 MiB) of rx buffers, so give a guest of 8 vCPUs --memory 16 or more.
  destroy NAME|DOMID [--no-wait]
      Remove the domain's vifs (online=0, state=5, wait up to 10 s for Closed), its nodes, the domain.
      --no-wait: do not wait on backends that never claimed a vif (still Initialising).
  list
      Name, ID, Mem, VCPUs, State, like xl list.
  network-attach NAME|DOMID [mac=MAC] [bridge=BR] [mtu=N] [vifname=IF] [script=PATH] [rate=RATE[@INTERVAL]] [backend=NAME|DOMID]
                 [--backend-type vif|qnic] [--no-wait] [--netfront [--ip A.B.C.D]]
      Add a vif with the next free devid; waits for its backend like create. --netfront: the
      running guest's netfront probes the new vif. rate= limits the guest's tx as libxl parses it
      (10Mb/s, 1MB/s@20ms, ...; interval 50ms unless given) and writes B/rate = "bytes,usecs".
  network-detach NAME|DOMID DEVID|MAC
      Remove a vif as libxl does: online=0 + state=5, wait up to 10 s for Closed (then once more,
      forced), then delete its nodes.
`;

function needPositionals(cmd: string, pos: string[], n: number, usage: string): void {
  if (pos.length !== n) throw new UsageError(`${cmd}: expected ${usage}${pos.length > n ? `, got extra ${JSON.stringify(pos.slice(n).join(" "))}` : ""}`);
}

/** Runs one xl command against the host in `dir`; returns the exit status. */
export async function xlMain(dir: string, argv: string[], io: Io): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === "--help" || cmd === "-h" || cmd === "help") {
    io.out(XL_HELP);
    return cmd ? 0 : 2;
  }
  const specs: Record<string, Record<string, OptionSpec<unknown>>> = {
    create: createOpts,
    destroy: destroyOpts,
    list: {},
    "network-attach": attachOpts,
    "network-detach": {},
  };
  const spec = specs[cmd];
  if (!spec) throw new UsageError(`unknown xl command ${JSON.stringify(cmd)}: expected one of ${Object.keys(specs).join(", ")}`);
  const p = parse(rest, spec);
  if (p.help) {
    io.out(XL_HELP);
    return 0;
  }
  const noWait = get(p, spec, "no-wait", false as boolean);
  const boot = get(p, spec, "netfront", false as boolean) ? { ip: get<string | undefined>(p, spec, "ip", undefined) } : undefined;
  if (!boot && get<string | undefined>(p, spec, "ip", undefined) !== undefined) throw new UsageError(`${cmd}: --ip goes with --netfront`);

  // Validate everything before touching the host.
  let run: (ts: Toolstack) => Promise<void>;
  switch (cmd) {
    case "create": {
      needPositionals(cmd, p.positionals, 1, "NAME");
      const name = check("domain name", p.positionals[0]!, nameArg);
      const vifs = get(p, spec, "vifs", 0);
      const memoryMb = get<number | undefined>(p, spec, "memory", undefined);
      const vcpus = get<number | undefined>(p, spec, "vcpus", undefined);
      const backendKind = get(p, spec, "backend-type", "vif");
      const backend = get<string | undefined>(p, spec, "backend", undefined);
      run = async (ts) => {
        // libxl resolves backend= before it builds anything: a missing domain fails the create.
        const backendDomid = backend === undefined ? 0 : await ts.findDomain(backend);
        const d = await ts.create(name, { vifs, memoryMb, vcpus, backendKind, backendDomid, noWait, boot });
        if (noWait && d.nics.length) io.err(`sim: --no-wait: not waiting for a backend; ${d.nics.map((n) => n.backend).join(", ")} left in Initialising`);
      };
      break;
    }
    case "destroy": {
      needPositionals(cmd, p.positionals, 1, "NAME|DOMID");
      const q = check("domain", p.positionals[0]!, qualifierArg);
      run = (ts) => ts.destroy(q, { noWait });
      break;
    }
    case "list":
      needPositionals(cmd, p.positionals, 0, "no arguments");
      run = async (ts) => io.out(formatXlList(await ts.list()));
      break;
    case "network-attach": {
      if (p.positionals.length < 1) throw new UsageError(`${cmd}: expected NAME|DOMID [key=value ...]`);
      const q = check("domain", p.positionals[0]!, qualifierArg);
      const nic: Partial<NicConfig> = { backendKind: get(p, spec, "backend-type", "vif") };
      let backend: string | undefined;
      for (const kv of p.positionals.slice(1)) {
        const eq = kv.indexOf("=");
        const key = eq > 0 ? kv.slice(0, eq) : "";
        if (key === "rate") {
          // libxl's own parser and words (vif-rate.ts), not a schema's.
          try {
            nic.rate = parseVifRate(kv.slice(eq + 1));
          } catch (e) {
            if (e instanceof VifRateError) throw new UsageError(e.message);
            throw e;
          }
          continue;
        }
        const keySpec = nicKeys[key];
        if (!keySpec) throw new UsageError(`${cmd}: unknown vif setting ${JSON.stringify(kv)}: expected key=value with key one of ${[...Object.keys(nicKeys), "rate"].join(", ")}`);
        const val = check(key, kv.slice(eq + 1), keySpec);
        if (key === "backend") backend = val as string;
        else (nic as Record<string, unknown>)[key] = val;
      }
      run = async (ts) => {
        if (backend !== undefined) nic.backendDomid = await ts.findDomain(backend);
        const n = await ts.networkAttach(q, nic, { noWait, boot });
        if (noWait) io.err(`sim: --no-wait: not waiting for a backend; vif devid ${n.devid} left in Initialising`);
      };
      break;
    }
    case "network-detach": {
      needPositionals(cmd, p.positionals, 2, "NAME|DOMID DEVID|MAC");
      const q = check("domain", p.positionals[0]!, qualifierArg);
      const which = p.positionals[1]!;
      if (!/^\d+$/.test(which) && !v.is(schemas.mac, which)) throw new UsageError(`invalid device ${JSON.stringify(which)}: expected a devid or a MAC`);
      run = (ts) => ts.networkDetach(q, which);
      break;
    }
    default:
      throw new UsageError(`unknown xl command ${cmd}`);
  }

  const paths = simPaths(dir);
  if (!hypervisorInitialised(dir)) throw new ToolstackError(`the simulated host is not running in ${paths.dir}: run 'sim up --dir ${paths.dir}' first`);
  let xs: XenstoreClient;
  try {
    xs = await XenstoreClient.connect({ path: paths.xenstoredSocket, reconnect: { enabled: false } });
  } catch {
    throw new ToolstackError(`xenstored is not answering on ${paths.xenstoredSocket}: run 'sim up --dir ${paths.dir}' first`);
  }
  try {
    await run(new Toolstack({ xs, hv: simHypervisor(dir), log: libxlLogTo(io.err), guests: netfrontGuests(dir) }));
    return 0;
  } finally {
    xs.close();
  }
}
