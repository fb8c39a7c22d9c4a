// `npm run demo`: qnicd carrying real frames between two guests on a simulated Xen host.
//
// A sim host in a temp dir; qnicd itself (src/main.ts, as users run it) in its own process; two
// guests, alice and bob, booted like `xl create --netfront` (a Linux-like netfront process per vif
// that answers ARP and ping). Their vifs are TAPs on a private Linux bridge when this process may
// make one, else ports of qnicd's in-daemon switch. Then pings: alice <-> bob in a few sizes and,
// on the bridge, host <-> guest. It stays up for `curl .../vifs` until Ctrl-C (or exits after the
// pings with --once); either way nothing is left: no process, no shm, no TAP or bridge, no temp dir.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { XenstoreClient } from "../xenstore/index.ts";
import { DemoGuests, type GuestShell } from "./demo/guest-process.ts";
import { pickHttpPort } from "./demo/http-port.ts";
import { removeBridge, setUpNetwork, type NetworkChoice } from "./demo/network.ts";
import { DEMO_USAGE, DemoUsageError, parseDemoArgs, type DemoOptions } from "./demo/options.ts";
import { arpResolve, endpoint, formatPing, guestPing, hostPing, type Endpoint, type PingResult } from "./demo/ping.ts";
import { QnicdProcess } from "./demo/qnicd-process.ts";
import { startHost, stopHost } from "./toolstack/host.ts";
import { simHypervisor } from "./toolstack/hypervisor.ts";
import { libxlLogTo } from "./toolstack/libxl-log.ts";
import { Toolstack } from "./toolstack/toolstack.ts";

/** ping -s sizes: the default, a middling one, and the largest that fits a 1500-byte MTU (a 1514-byte frame). */
const PING_SIZES = [56, 1000, 1472];
const PINGS_PER_SIZE = 3;

const say = (s = "") => process.stdout.write(`${s}\n`);
const warn = (s: string) => process.stderr.write(`${s}\n`);

class Interrupted extends Error {}

let opts: DemoOptions;
try {
  opts = parseDemoArgs(process.argv.slice(2));
} catch (e) {
  warn(e instanceof DemoUsageError ? e.message : `demo: ${(e as Error).message}`);
  process.exit(2);
}
if (opts.help) {
  process.stdout.write(DEMO_USAGE);
  process.exit(0);
}

const tmp = mkdtempSync(join(tmpdir(), "qnicd-demo-"));
const dir = join(tmp, "host");
let hostStarted: Promise<unknown> | undefined;
let net: NetworkChoice | undefined;
let qnicd: QnicdProcess | undefined;
let xs: XenstoreClient | undefined;
const guests = new DemoGuests(dir);

let signalled: string | undefined;
let wakeWaiter: (() => void) | undefined;
/** Between steps of the setup: a Ctrl-C meanwhile ends it here. */
const checkpoint = () => {
  if (signalled) throw new Interrupted();
};

let cleaning: Promise<boolean> | undefined;
/** Tears down in dependency order; true when nothing was left behind. */
function cleanup(): Promise<boolean> {
  cleaning ??= (async () => {
    const problems: string[] = [];
    const done: string[] = [];
    // qnicd first: it closes every vif (the guests see Closed) and with them the TAPs.
    if (qnicd) {
      const how = await qnicd.stop();
      if (how !== "exited with status 0") problems.push(`qnicd ${how}: ${qnicd.lastLogLine()}`);
      done.push(`qnicd stopped`);
    }
    await guests.killAll();
    xs?.close();
    if (hostStarted) {
      await hostStarted.catch(() => {});
      const r = await stopHost(dir, { destroyTimeoutMs: 2000, log: libxlLogTo((l) => (signalled ? undefined : warn(l))) });
      problems.push(...r.warnings);
      done.push(r.destroyed.length ? `destroyed ${r.destroyed.join(", ")}` : "host stopped");
    }
    if (net?.mode === "tap") {
      const e = removeBridge(net.bridge);
      if (e) problems.push(e);
      else done.push(`removed ${net.bridge}`);
    }
    rmSync(tmp, { recursive: true, force: true });
    done.push(`removed ${tmp}`);
    for (const p of problems) warn(`demo: ${p}`);
    say(`cleaned up: ${done.join(", ")}`);
    return problems.length === 0;
  })();
  return cleaning;
}

let signalledAt = 0;
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    if (signalled) {
      // Through `npm run demo` one Ctrl-C arrives twice: from the terminal (we are in its process
      // group) and forwarded by scripts/bun.mjs. Only a later one is the user insisting.
      if (Date.now() - signalledAt < 1000) return;
      warn(`${sig} again: killing qnicd and the guests without waiting for them`);
      void qnicd?.kill();
      void guests.killAll();
      // The teardown goes on with nothing left to wait for; should it still hang, leave the rest
      // to the sim's own `down`, which needs the run directory, so that stays.
      setTimeout(() => {
        if (net?.mode === "tap") removeBridge(net.bridge);
        warn(`demo: gave up cleaning up; 'npm run sim -- down --dir ${dir}' stops what is left`);
        process.exit(1);
      }, 5000).unref();
      return;
    }
    signalled = sig;
    signalledAt = Date.now();
    if (wakeWaiter) wakeWaiter();
    else warn(`\n${sig}: stopping the demo`);
  });
}

interface Guest {
  name: string;
  domid: number;
  vif: string;
  me: Endpoint;
  shell: GuestShell;
}

async function bootGuests(ts: Toolstack, n: NetworkChoice): Promise<[Guest, Guest]> {
  const out: Guest[] = [];
  for (const [i, name] of (["alice", "bob"] as const).entries()) {
    checkpoint();
    const ip = n.guestIps[i]!;
    // libxl's create: nodes, wait for qnicd to reach InitWait, then the guest boots its netfront.
    // Its vif names the demo's bridge (bridge=), which qnicd's TAP joins under --bridge.
    const d = await ts.create(name, { vifs: 1, ...(n.mode === "tap" ? { nics: [{ bridge: n.bridge }] } : {}), boot: { ip } });
    const shell = guests.shell(d.domid);
    const { mac } = await shell.whenConnected(15_000);
    const where = n.mode === "tap" ? `TAP ${n.prefix}${d.domid}.0 on ${n.bridge}` : "a port of qnicd's switch";
    say(`  ${name.padEnd(5)}  domain ${d.domid}, vif${d.domid}.0 -> ${where}, mac ${mac}, ip ${ip}: netfront Connected`);
    out.push({ name, domid: d.domid, vif: `vif${d.domid}.0`, me: endpoint(mac, ip), shell });
  }
  return out as [Guest, Guest];
}

/** Pings `target` from guest `from` in every size; prints one line per size. */
async function pingFrom(from: Guest, targetName: string, targetIp: string): Promise<PingResult[]> {
  say(`ping ${from.name} -> ${targetName} (${targetIp})`);
  const ipBytes = endpoint("00:00:00:00:00:00", targetIp).ip;
  const mac = await arpResolve(from.shell, from.me, ipBytes);
  if (!mac) {
    say(`  ARP: no answer from ${targetIp} to ${from.name}'s "who has" (3 tries)`);
    return PING_SIZES.map((size) => ({ size, sent: PINGS_PER_SIZE, received: 0, corrupt: 0, rttsMs: [] }));
  }
  const results: PingResult[] = [];
  for (const size of PING_SIZES) {
    checkpoint();
    const r = await guestPing(from.shell, from.me, { mac, ip: ipBytes }, size, PINGS_PER_SIZE);
    say(formatPing(r));
    results.push(r);
  }
  return results;
}

async function printCounters(url: string): Promise<void> {
  try {
    const v = (await (await fetch(`${url}/vifs`)).json()) as { vifs: { name: string; worker: number | null; counters: Record<string, number> | null }[] };
    for (const x of v.vifs) {
      const c = x.counters;
      say(`  ${x.name}: worker ${x.worker ?? "-"}, ${c ? `guest tx ${c.tx_packets} packets / ${c.tx_bytes} bytes, guest rx ${c.rx_packets} packets / ${c.rx_bytes} bytes, drops ${c.tx_drops + c.rx_drops}` : "no counters yet"}`);
    }
  } catch (e) {
    say(`  (could not read ${url}/vifs: ${(e as Error).message})`);
  }
}

async function main(): Promise<number> {
  // The network first: a --peer tap that cannot be had fails before anything has started.
  net = setUpNetwork(opts.peer);
  say(
    net.mode === "tap"
      ? `network: TAPs on a private Linux bridge ${net.bridge} (host ${net.hostIp}/${net.prefixLen}), because ${net.why}`
      : `network: qnicd's in-daemon switch (--peer switch), because ${net.why}`,
  );
  checkpoint();

  hostStarted = startHost(dir);
  const host = (await hostStarted) as Awaited<ReturnType<typeof startHost>>;
  say(`simulated Xen host up in ${host.dir} (xenstored pid ${host.pid})`);
  checkpoint();

  const port = await pickHttpPort(8080);
  const hostPort = `127.0.0.1:${port}`;
  const args = ["--platform", "sim", "--sim-dir", dir, "--peer", net.mode, ...(net.mode === "tap" ? ["--bridge", net.bridge] : []), "--vifname-prefix", net.prefix, "--http", hostPort, "--workers", "2", "--on-exit", "close"];
  qnicd = await QnicdProcess.start(args, join(tmp, "qnicd.log"), hostPort);
  say(`qnicd up (pid ${qnicd.pid}, log ${qnicd.logFile}): ${qnicd.commandLine}`);
  if (port !== 8080) say(`  (127.0.0.1:8080 is taken, so its status API is on ${hostPort})`);
  checkpoint();

  xs = await XenstoreClient.connect({ path: host.socketPath, reconnect: { enabled: false } });
  // After a Ctrl-C the teardown closes this client under an in-flight create: its complaints are noise.
  const ts = new Toolstack({ xs, hv: simHypervisor(dir), guests, log: libxlLogTo((l) => signalled || warn(l)) });
  say("guests (xl create NAME --vifs 1 --netfront --ip IP):");
  const [alice, bob] = await bootGuests(ts, net);

  say();
  // Honest about what the figures measure: the demo plays a program inside the guest, so each RTT
  // includes two pipe crossings into its netfront process as well as the data path.
  say("pings (RTTs are measured inside the pinging guest: they include the pipes into its netfront process)");
  const results: PingResult[] = [];
  results.push(...(await pingFrom(alice, bob.name, net.guestIps[1])));
  results.push(...(await pingFrom(bob, alice.name, net.guestIps[0])));
  if (net.mode === "tap") {
    results.push(...(await pingFrom(alice, "the host", net.hostIp)));
    for (const g of [alice, bob]) {
      checkpoint();
      const ip = net.guestIps[g === alice ? 0 : 1];
      const first = hostPing(net.bridge, ip, PING_SIZES[0]!, PINGS_PER_SIZE);
      if (!first) {
        say(`ping the host -> ${g.name}: skipped, this host has no ping command (iputils-ping); the host's echo replies to alice above crossed host -> guest`);
        break;
      }
      say(`ping the host -> ${g.name} (${ip}), with the host's ping`);
      for (const [i, size] of PING_SIZES.entries()) {
        const r = i === 0 ? first : hostPing(net.bridge, ip, size, PINGS_PER_SIZE)!;
        say(formatPing(r));
        results.push(r);
      }
    }
  } else {
    say(`ping the host <-> guests: skipped, the switch has no host port (${net.why})`);
  }
  const sent = results.reduce((a, r) => a + r.sent, 0);
  const lost = sent - results.reduce((a, r) => a + r.received, 0);
  say(lost === 0 ? `all ${sent} pings answered, none lost` : `${lost} of ${sent} pings unanswered or corrupt`);

  say();
  say("qnicd's counters for the vifs:");
  await printCounters(qnicd.url);
  say();
  say(`status API: curl ${hostPort}/vifs   (also /health and /vifs/${alice.vif})`);
  const failed = lost === 0 ? 0 : 1;
  if (opts.once) return failed;

  say("up until Ctrl-C, which stops qnicd and the guests and removes everything the demo made");
  await new Promise<void>((res) => {
    wakeWaiter = res;
    if (signalled) res();
  });
  warn(`\n${signalled}: stopping the demo`);
  return failed;
}

let code: number;
try {
  code = await main();
} catch (e) {
  if (e instanceof Interrupted || signalled) code = 130;
  else {
    const msg = (e as Error).message.replace(/\s*[\r\n]+\s*/g, " ");
    warn(msg.startsWith("demo: ") ? msg : `demo failed: ${msg}`);
    code = 1;
  }
}
const clean = await cleanup();
process.exit(code === 0 && !clean ? 1 : code);
