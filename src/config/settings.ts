// Every daemon setting, once. A setting's flag (--sim-dir), env var (QNICD_SIM_DIR), config file key
// ("sim-dir"), --help entry and validation all come from its row here, so adding a setting is one row.
import { resolve } from "node:path";
import * as v from "valibot";
import { LOG_FORMATS, LOG_LEVELS } from "../log.ts";
import { httpAddressSchema, formatHttpAddress } from "./http-address.ts";

/** What a default may depend on: injected so tests do not depend on the machine running them. */
export interface DefaultsContext {
  env: Readonly<Record<string, string | undefined>>;
  cpuCount: number;
  uid: number;
}

export interface SettingDef<T> {
  help: string;
  /** Completes "expected ..." in error messages and is shown in --help. */
  expected: string;
  /** Parses the setting's text form (flags and env vars are text; file values are converted to text). */
  schema: v.GenericSchema<string, T>;
  // NoInfer: the schema alone decides T; the default is checked against it rather than widening it.
  default: (ctx: DefaultsContext) => NoInfer<T>;
  /** --help's description of a default that depends on the host. */
  defaultHelp?: string;
  /** The value's placeholder in --help ("N", "HOST:PORT"). */
  metavar?: string;
  /** Written as a bare flag (`--http-public`) rather than `--flag VALUE`. */
  boolean?: true;
}

const setting = <T>(d: SettingDef<T>): SettingDef<T> => d;

const integer = (min: number, max: number) =>
  v.pipe(v.string(), v.regex(/^\d{1,10}$/), v.transform(Number), v.minValue(min), v.maxValue(max));

const oneOf = <const T extends readonly string[]>(options: T) =>
  v.pipe(v.string(), v.picklist(options)) as v.GenericSchema<string, T[number]>;

const boolean = v.pipe(
  v.string(),
  v.picklist(["true", "false", "1", "0", "yes", "no"]),
  v.transform((s) => s === "true" || s === "1" || s === "yes"),
);

// Linux's dev_valid_name(): shorter than IFNAMSIZ (16), not "." or "..", no '/', ':' or whitespace.
const ifname = v.pipe(
  v.string(),
  v.regex(/^[^/:\s]{1,15}$/),
  v.check((s) => s !== "." && s !== ".."),
);

/** The first domid Xen reserves (DOMID_FIRST_RESERVED, 0x7FF0). */
const DOMID_MAX = 0x7fef;

export const SETTINGS = {
  platform: setting({
    metavar: "auto|xen|sim",
    help: "which Xen to run on: real Xen (/dev/xen/*), the simulated host, or detect",
    expected: "one of auto, xen, sim",
    schema: oneOf(["auto", "xen", "sim"]),
    default: () => "auto" as const,
  }),
  simDir: setting({
    metavar: "DIR",
    help: "run directory of the simulated Xen host (with --platform sim)",
    expected: "a directory path",
    schema: v.pipe(v.string(), v.regex(/^[^\0]+$/), v.transform((p) => resolve(p))),
    default: ({ env, uid }) => (env.XDG_RUNTIME_DIR ? resolve(env.XDG_RUNTIME_DIR, "qnicd-sim") : `/tmp/qnicd-sim-${uid}`),
    defaultHelp: "$XDG_RUNTIME_DIR/qnicd-sim, else /tmp/qnicd-sim-<uid>",
  }),
  backendType: setting({
    metavar: "vif|qnic",
    help: "xenstore backend type to serve: backend/<type>/<domid>/...",
    expected: "one of vif, qnic",
    schema: oneOf(["vif", "qnic"]),
    default: () => "vif" as const,
  }),
  domid: setting<number | "auto">({
    metavar: "N|auto",
    // A driver domain (xl's vif backend=) reaches xenstore through /dev/xen/xenbus and reads its
    // own id there (src/platform/backend-domid.ts); dom0 is 0.
    help: "the domain qnicd runs in and serves vifs from (the backend domain): auto reads it from xenstore in a driver domain, else 0",
    expected: `auto or an integer from 0 to ${DOMID_MAX}`,
    schema: v.union([v.pipe(v.string(), v.literal("auto")), integer(0, DOMID_MAX)]),
    default: () => "auto" as const,
  }),
  workers: setting({
    metavar: "N",
    help: "worker threads carrying packets",
    expected: "an integer from 1 to 256",
    schema: integer(1, 256),
    default: ({ cpuCount }) => Math.min(256, Math.max(1, cpuCount)),
    defaultHelp: "the number of CPUs",
  }),
  maxQueues: setting<number | "auto">({
    metavar: "N|auto",
    // Written as multi-queue-max-queues; netback offers min(8, online CPUs). Each queue is one ring
    // pair with its own event channels, spread over the workers.
    help: "queues (ring pairs) a vif's frontend may open: auto offers min(8, --workers)",
    expected: "auto or an integer from 1 to 64",
    schema: v.union([v.pipe(v.string(), v.literal("auto")), integer(1, 64)]),
    default: () => "auto" as const,
  }),
  http: setting({
    metavar: "HOST:PORT",
    help: "address of the read-only status API (/health, /vifs)",
    expected: "HOST:PORT with an IPv4 address, [IPv6] address or hostname and a port from 0 to 65535",
    schema: httpAddressSchema,
    default: () => ({ host: "127.0.0.1", port: 8080 }),
    defaultHelp: formatHttpAddress({ host: "127.0.0.1", port: 8080 }),
  }),
  httpPublic: setting({
    help: "allow --http on a non-loopback address (the API has no authentication)",
    expected: "true or false",
    schema: boolean,
    default: () => false,
    boolean: true,
  }),
  peer: setting({
    metavar: "tap|switch|null",
    // tap and null also offer feature-sg / feature-gso-* (src/backend/features.ts); the switch
    // feeds other guests' rx paths, which take no GSO.
    help: "where a vif's frames go: a tap device, the in-process switch, or nowhere (tap and null offer guests TCP GSO, the switch does not)",
    expected: "one of tap, switch, null",
    schema: oneOf(["tap", "switch", "null"]),
    default: () => "tap" as const,
  }),
  datapath: setting({
    metavar: "batched|seed",
    // seed: QEMU qnic's per-packet algorithm (a grant map and unmap per packet, a push and notify
    // check per response), kept as the baseline bench/scenarios/seed.ts measures batching against.
    help: "the workers' data path: batched grant copies, or the seed's per-packet grant map (a baseline)",
    expected: "one of batched, seed",
    schema: oneOf(["batched", "seed"]),
    default: () => "batched" as const,
  }),
  bridge: setting<string | null>({
    metavar: "NAME",
    // libxl writes B/bridge for every vif (xenbr0 when its config names none), so under --bridge a
    // libxl vif joins its own bridge, as vif-bridge would put it there under Linux netback.
    help: "qnicd puts each tap device on a Linux bridge itself: the one its vif's config names (bridge=, B/bridge), else this one (none: taps are left to the hotplug script)",
    expected: "a Linux interface name: 1 to 15 characters, no '/', ':' or whitespace",
    schema: ifname,
    default: () => null,
    defaultHelp: "none",
  }),
  vifnamePrefix: setting({
    metavar: "PREFIX",
    // Short enough that "<prefix><domid>.<devid>" usually fits in IFNAMSIZ, like Linux's "vif%u.%u".
    help: "prefix of tap device names: <prefix><domid>.<devid>",
    expected: "1 to 8 letters, digits, '_' or '-', starting with a letter",
    schema: v.pipe(v.string(), v.regex(/^[A-Za-z][A-Za-z0-9_-]{0,7}$/)),
    default: () => "vif" as const,
  }),
  onExit: setting({
    metavar: "keep|close",
    // keep: what `systemctl restart` needs; the vifs' rings, TAPs and journals stay for the next
    // qnicd, which takes them over without the guests noticing (src/state/). close: every guest sees
    // its backend go away (Closed), for a host going down for good.
    help: "what SIGTERM/SIGINT does to served vifs: keep them for the next qnicd to take over, or close them",
    expected: "one of keep, close",
    schema: oneOf(["keep", "close"]),
    default: () => "keep" as const,
  }),
  runtimeDir: setting<string | null>({
    metavar: "DIR",
    help: "where the owner lock and the vif journals live (must survive a restart, e.g. tmpfs under /run)",
    expected: "a directory path",
    schema: v.pipe(v.string(), v.regex(/^[^\0]+$/), v.transform((p) => resolve(p))),
    default: () => null,
    defaultHelp: "$RUNTIME_DIRECTORY (systemd), else /run/qnicd as root or $XDG_RUNTIME_DIR/qnicd; with --platform sim, <sim-dir>/qnicd",
  }),
  logLevel: setting({
    metavar: "LEVEL",
    help: "least severe log level written",
    expected: `one of ${LOG_LEVELS.join(", ")}`,
    schema: oneOf(LOG_LEVELS),
    default: () => "info" as const,
  }),
  logFormat: setting({
    metavar: "text|json",
    help: "log line format",
    expected: `one of ${LOG_FORMATS.join(", ")}`,
    schema: oneOf(LOG_FORMATS),
    default: () => "text" as const,
  }),
};

export type SettingKey = keyof typeof SETTINGS;
export type SettingValues = { [K in SettingKey]: (typeof SETTINGS)[K] extends SettingDef<infer T> ? T : never };

export const SETTING_KEYS = Object.keys(SETTINGS) as SettingKey[];

/** simDir -> "sim-dir" (the flag without dashes, also the config file key). */
export function flagName(key: string): string {
  return key.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());
}

/** simDir -> "QNICD_SIM_DIR" */
export function envName(key: string): string {
  return "QNICD_" + flagName(key).replace(/-/g, "_").toUpperCase();
}

/** The config file path is not a setting in the table: it is read before the others and cannot set itself. */
export const CONFIG_FILE_FLAG = "config";
export const CONFIG_FILE_ENV = "QNICD_CONFIG";
/** Read when neither --config nor QNICD_CONFIG names a file, if it exists (README: Install on a Xen host). */
export const DEFAULT_CONFIG_FILE = "/etc/qnicd/qnicd.json";
