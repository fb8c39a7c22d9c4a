// CONTROL: the cheap subset of xenstored's commands (tools/xenstored/control.c): check, log,
// print, quota (show, set, per-domain usage), help. Anything else is EINVAL, as in xenstored.
import { fail } from "./errors.ts";
import type { Host } from "./handlers.ts";
import { QUOTA_NAMES, type Quotas } from "./quotas.ts";
import { atoi, nulStrings } from "./wire.ts";

const HELP: [string, string][] = [
  ["check", ""],
  ["log", "[on|off]"],
  ["print", "<string>"],
  ["quota", "[set <name> <val>|<domid>]"],
  ["help", ""],
];

const OK = Buffer.from("OK\0", "latin1");
const text = (s: string) => Buffer.from(`${s}\0`, "latin1");

export function handleControl(host: Host, payload: Buffer): Buffer {
  const args = nulStrings(payload);
  if (args.length === 0) fail("EINVAL");
  const [cmd, ...params] = args as [string, ...string[]];
  switch (cmd) {
    case "check":
      if (params.length) fail("EINVAL");
      return OK;
    case "log":
      if (params.length === 0) return text("Log switch settings:\nio      : off\n");
      if (params.length === 1 && (params[0] === "on" || params[0] === "off")) return OK;
      fail("EINVAL");
    case "print":
      if (params.length !== 1) fail("EINVAL");
      host.log(`control: ${params[0]}`);
      return OK;
    case "quota":
      return quota(host, params);
    case "help":
      if (params.length) fail("EINVAL");
      return text(HELP.map(([c, p]) => `${c.padEnd(15)} ${p}\n`).join(""));
    default:
      fail("EINVAL", `unknown control command ${cmd}`);
  }
}

function quota(host: Host, params: string[]): Buffer {
  const q = host.quotas;
  if (params.length === 0) {
    const lines = (Object.keys(QUOTA_NAMES) as (keyof Quotas)[]).map(
      (k) => `${QUOTA_NAMES[k].padEnd(17)}: ${String(q[k]).padStart(8)}\n`,
    );
    return text(`Quota settings:\n${lines.join("")}`);
  }
  if (params[0] === "set") {
    if (params.length !== 3) fail("EINVAL");
    const val = atoi(params[2]!);
    const key = (Object.keys(QUOTA_NAMES) as (keyof Quotas)[]).find((k) => QUOTA_NAMES[k] === params[1]);
    if (!key || val < 1) fail("EINVAL");
    q[key] = val;
    return OK;
  }
  if (params.length !== 1) fail("EINVAL");
  const domid = atoi(params[0]!) >>> 0;
  if (domid !== 0 && !host.isIntroduced(domid)) fail("ENOENT");
  let watches = 0;
  let transactions = 0;
  for (const c of host.connections) {
    if (c.caller.domid !== domid) continue;
    watches += c.watches.length;
    transactions += c.transactions.size;
  }
  const row = (name: string, v: number) => `${name.padEnd(17)}: ${String(v).padStart(8)}\n`;
  return text(
    `Domain ${domid}:\n` + row("nodes", host.store.owned(domid)) + row("watches", watches) + row("transactions", transactions),
  );
}
