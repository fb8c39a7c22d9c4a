// A simulated guest process running one netfront, for the toolstack and end-to-end tests.
//
//   bun src/sim/netfront/main.ts --dir DIR --domid N --devid D [--ip A.B.C.D] [--reset-on SIGUSR1]
//        [--script FILE] [--reset-wait-ms MS] [--probe-wait-ms MS] [--quiet-rx]
//        [--vcpus N] [--max-queues N] [--no-split-event-channels]
//        [--hostile-queues N] [--hostile-num-queues VALUE] [--hostile-omit KEY]...  (see HostileQueueKeys)
//        [--ctrl-ring [--ctrl-hostile oversized-key|mapping-beyond-queues|req-prod-far-ahead]]
//
// stdout: one JSON object per line, each with an "event" field (see PROTOCOL below).
// stdin: one command per line. Diagnostics (Linux-style driver messages) go to stderr.
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { xenbusStateName } from "../../xen/xenbus-state.ts";
import { createNetfront, type Netfront } from "./netfront.ts";
import type { CtrlHostility } from "./ctrl-client.ts";

export const PROTOCOL = `
stdout events (JSON lines):
  {"event":"started","pid","domid","devid","frontend","backend","backendDomid"}
  {"event":"state","state":N,"name":S}            our xenbus state was written
  {"event":"backend-state","state":N,"name":S}    the backend's state as netback_changed saw it
  {"event":"connected","txRingRef","rxRingRef","txPort","rxPort","split","mac"[,"numQueues"],"queues":[{id,dir,txRingRef,rxRingRef,txPort,rxPort}...]}
  {"event":"rx","len":N,"flags":N,"slots":N,"hex":S[,"gso":{size,type}][,"hash":{type,alg,value}]}   (not with --quiet-rx)
  {"event":"ctrl","results":[{type,status,data}...]}   the control ring's hash setup (--ctrl-ring)
  {"event":"sent","ok":B,"len":N}                 answer to "send"
  {"event":"stats",...counters,"state","backendState","rxPosted","txInFlight","txBacklog","queues":[{id,counters,rxPosted,txInFlight,txBacklog}...]}
                                                  (counters and depths summed over queues; "queues" per queue)
  {"event":"gave-up","reason":S} | {"event":"broken","reason":S}
  {"event":"reset-done"} | {"event":"removed"} | {"event":"error","message":S} | {"event":"exit"}
stdin commands:
  send <hex> [flags=N] [offset=N] [queue=N]
                                    queue one Ethernet frame for transmission (on queue N, else
                                    on the queue its flow hashes to)
  reset                             xenbus_reset_frontend walk (5, 6, 1) and reconnect
  stats                             print a stats line
  exit                              stop the driver (xenstore untouched) and exit 0
script file (--script): the same commands, plus "sleep <ms>" and "wait-connected", run once
  after the first connection; '#' starts a comment.
`;

const USAGE =
  "usage: main.ts --dir DIR --domid N --devid D [--ip A.B.C.D] [--reset-on SIGNAL] [--script FILE] [--reset-wait-ms MS] [--probe-wait-ms MS] [--quiet-rx]" +
  " [--vcpus N (queues: min(8, N) unless --max-queues)] [--max-queues N (xen_netfront.max_queues)] [--no-split-event-channels]" +
  " [--hostile-queues N] [--hostile-num-queues VALUE] [--hostile-omit KEY]... (queue keys Linux never writes, for backend tests)" +
  " [--ctrl-ring [--ctrl-hostile KIND]]";
const CTRL_HOSTILITIES: readonly CtrlHostility[] = ["oversized-key", "mapping-beyond-queues", "req-prod-far-ahead"];

function out(obj: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

function toHex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
}

function parseFrameCommand(args: string[]): { frame: Uint8Array; flags?: number; offset?: number; queue?: number } {
  const [hex, ...rest] = args;
  if (!hex || !/^([0-9a-fA-F]{2})*$/.test(hex)) throw new Error("send needs an even-length hex string");
  const r: { frame: Uint8Array; flags?: number; offset?: number; queue?: number } = { frame: Uint8Array.from(Buffer.from(hex, "hex")) };
  for (const kv of rest) {
    const m = /^(flags|offset|queue)=(\d+)$/.exec(kv);
    if (!m) throw new Error(`unknown send option ${kv}: use flags=N, offset=N or queue=N`);
    r[m[1] as "flags" | "offset" | "queue"] = Number(m[2]);
  }
  return r;
}

async function runCommand(nf: Netfront, line: string, quit: () => Promise<void>): Promise<void> {
  const words = line.trim().split(/\s+/).filter(Boolean);
  if (words.length === 0 || words[0]!.startsWith("#")) return;
  const [cmd, ...args] = words;
  switch (cmd) {
    case "send": {
      const { frame, ...opts } = parseFrameCommand(args);
      out({ event: "sent", ok: nf.send(frame, opts), len: frame.length });
      return;
    }
    case "reset":
      await nf.reset();
      return;
    case "stats":
      out({ event: "stats", ...nf.counters, state: nf.state, backendState: nf.backendState, ...nf.queueDepths(), queues: nf.queueStats() });
      return;
    case "sleep":
      await Bun.sleep(Number(args[0] ?? 0));
      return;
    case "wait-connected":
      await nf.whenConnected(Number(args[0] ?? 30_000));
      return;
    case "exit":
      await quit();
      return;
    default:
      throw new Error(`unknown command ${JSON.stringify(cmd)}: send, reset, stats, exit`);
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      dir: { type: "string" },
      domid: { type: "string" },
      devid: { type: "string", default: "0" },
      ip: { type: "string" },
      "reset-on": { type: "string" },
      script: { type: "string" },
      "reset-wait-ms": { type: "string" },
      "probe-wait-ms": { type: "string" },
      "quiet-rx": { type: "boolean", default: false },
      vcpus: { type: "string" },
      "max-queues": { type: "string" },
      "no-split-event-channels": { type: "boolean", default: false },
      "hostile-queues": { type: "string" },
      "hostile-num-queues": { type: "string" },
      "hostile-omit": { type: "string", multiple: true },
      "ctrl-ring": { type: "boolean", default: false },
      "ctrl-hostile": { type: "string" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n${PROTOCOL}`);
    return;
  }
  const num = (v: string | undefined, name: string) => {
    if (v === undefined || !/^\d+$/.test(v)) throw new Error(`--${name} needs a non-negative integer\n${USAGE}`);
    return Number(v);
  };
  const positive = (v: string, name: string) => {
    const n = num(v, name);
    if (n < 1) throw new Error(`--${name} needs an integer of at least 1\n${USAGE}`);
    return n;
  };
  if (!values.dir) throw new Error(`--dir is required\n${USAGE}`);
  const hostile = values["ctrl-hostile"] as CtrlHostility | undefined;
  if (hostile !== undefined && (!values["ctrl-ring"] || !CTRL_HOSTILITIES.includes(hostile))) throw new Error(`--ctrl-hostile needs --ctrl-ring and one of ${CTRL_HOSTILITIES.join(", ")}\n${USAGE}`);
  const nf = await createNetfront({
    dir: values.dir,
    domid: num(values.domid, "domid"),
    devid: num(values.devid, "devid"),
    ip: values.ip,
    resetWaitMs: values["reset-wait-ms"] === undefined ? undefined : num(values["reset-wait-ms"], "reset-wait-ms"),
    probeWaitMs: values["probe-wait-ms"] === undefined ? undefined : num(values["probe-wait-ms"], "probe-wait-ms"),
    vcpus: values.vcpus === undefined ? undefined : positive(values.vcpus, "vcpus"),
    maxQueues: values["max-queues"] === undefined ? undefined : positive(values["max-queues"], "max-queues"),
    splitEventChannels: !values["no-split-event-channels"],
    hostile:
      values["hostile-queues"] !== undefined || values["hostile-num-queues"] !== undefined || values["hostile-omit"] !== undefined
        ? {
            queues: values["hostile-queues"] === undefined ? undefined : positive(values["hostile-queues"], "hostile-queues"),
            numQueuesValue: values["hostile-num-queues"],
            omitKeys: values["hostile-omit"],
          }
        : undefined,
    log: (l) => process.stderr.write(`${l}\n`),
    ctrlRing: values["ctrl-ring"] ? { hostile } : undefined,
  });
  let exiting = false;
  const quit = async (code = 0) => {
    if (exiting) return;
    exiting = true;
    await nf.close();
    out({ event: "exit" });
    process.exit(code);
  };
  nf.onEvent((e) => {
    if (e.type === "connected") {
      out({ event: "connected", ...e.info });
      void nf.hashConfigured()?.then(
        (results) => out({ event: "ctrl", results }),
        (err) => out({ event: "error", message: `control ring: ${(err as Error).message}` }),
      );
    }
    else if (e.type === "state" || e.type === "backend-state") out({ event: e.type, state: e.state, name: xenbusStateName(e.state) });
    else if (e.type === "gave-up" || e.type === "broken") out({ event: e.type, reason: e.reason });
    else out({ event: e.type });
    if (e.type === "removed") void quit(0);
  });
  if (!values["quiet-rx"]) nf.onReceive((f, m) => out({ event: "rx", len: f.length, flags: m.flags, slots: m.slots, hex: toHex(f), ...(m.gso ? { gso: m.gso } : {}), ...(m.hash ? { hash: m.hash } : {}) }));
  out({ event: "started", pid: process.pid, domid: num(values.domid, "domid"), devid: num(values.devid, "devid"), frontend: nf.frontendPath, backend: nf.backendPath, backendDomid: nf.backendDomid });

  const sig = values["reset-on"];
  if (sig) process.on(sig as NodeJS.Signals, () => void nf.reset().catch((e) => out({ event: "error", message: (e as Error).message })));
  for (const s of ["SIGTERM", "SIGINT"] as const) process.on(s, () => void quit(0));

  if (values.script) {
    const lines = readFileSync(values.script, "utf8").split("\n");
    void nf.whenConnected(24 * 3600_000).then(async () => {
      for (const l of lines) {
        try {
          await runCommand(nf, l, () => quit(0));
        } catch (e) {
          out({ event: "error", message: (e as Error).message });
        }
      }
    });
  }

  // Commands run one at a time, in order. EOF on stdin (a guest started with stdin closed) is not
  // a reason to stop: the guest runs until a signal, "exit" or the device's removal.
  let chain = Promise.resolve();
  for await (const line of console) {
    chain = chain.then(() => runCommand(nf, line, () => quit(0)).catch((e) => out({ event: "error", message: (e as Error).message })));
  }
}

main().catch((e) => {
  process.stderr.write(`netfront: ${(e as Error).message}\n`);
  process.exit(1);
});
