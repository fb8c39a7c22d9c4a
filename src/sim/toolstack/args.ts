// Command-line parsing for `sim` and `sim xl`: `--name VALUE`, `--name=VALUE`, bare boolean flags,
// positionals, and xl's `key=value` device settings. Every value is checked by a valibot schema;
// a bad one is one line naming the option, the value and what is allowed.
import { resolve } from "node:path";
import * as v from "valibot";

export class UsageError extends Error {
  override name = "UsageError";
}

export interface OptionSpec<T> {
  /** What is allowed, completing "expected ..." (e.g. "an integer from 0 to 64"). */
  expected: string;
  schema: v.GenericSchema<string, T>;
  boolean?: true;
}

export const option = <T>(o: OptionSpec<T>): OptionSpec<T> => o;

const integer = (min: number, max: number) =>
  v.pipe(v.string(), v.regex(/^\d{1,10}$/), v.transform(Number), v.minValue(min), v.maxValue(max));

export const schemas = {
  integer,
  dir: v.pipe(v.string(), v.regex(/^[^\0]+$/), v.transform((p: string) => resolve(p))),
  // A domain name: something xl would accept that cannot be mistaken for a domid.
  domainName: v.pipe(v.string(), v.regex(/^[A-Za-z0-9_.-]{1,64}$/), v.check((s: string) => !/^\d+$/.test(s))),
  mac: v.pipe(
    v.string(),
    v.regex(/^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$/),
    v.check((s: string) => (Number.parseInt(s.slice(0, 2), 16) & 1) === 0),
    v.transform((s: string) => s.toLowerCase()),
  ),
  // Linux's dev_valid_name(): shorter than IFNAMSIZ (16), not "." or "..", no '/', ':' or whitespace.
  ifname: v.pipe(v.string(), v.regex(/^[^/:\s]{1,15}$/), v.check((s: string) => s !== "." && s !== "..")),
  bridge: v.pipe(v.string(), v.regex(/^[^/:\s]{1,15}$/)),
  path: v.pipe(v.string(), v.regex(/^\/[^\0\s]*$/)),
  backendType: v.picklist(["vif", "qnic"]),
};

/** Checks `value` against `spec`; throws a one-line UsageError naming `what`. */
export function check<T>(what: string, value: string, spec: OptionSpec<T>): T {
  const r = v.safeParse(spec.schema, value);
  if (!r.success) throw new UsageError(`invalid ${what} ${JSON.stringify(value)}: expected ${spec.expected}`);
  return r.output;
}

export interface Parsed {
  /** Option name (without dashes) -> raw text; bare booleans are "true". */
  options: Map<string, string>;
  positionals: string[];
  help: boolean;
}

/** Splits argv; options not in `specs` are errors, so a typo never silently means "the default". */
export function parse(argv: readonly string[], specs: Record<string, OptionSpec<unknown>>): Parsed {
  const options = new Map<string, string>();
  const positionals: string[] = [];
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--help" || a === "-h") {
      help = true;
      continue;
    }
    const m = /^--([a-z][a-z-]*)(?:=(.*))?$/s.exec(a);
    if (!m) {
      positionals.push(a);
      continue;
    }
    const [, name, inline] = m as unknown as [string, string, string | undefined];
    const spec = specs[name];
    if (!spec) throw new UsageError(`unknown option --${name} (see --help)`);
    if (inline !== undefined) options.set(name, inline);
    else if (spec.boolean) options.set(name, "true");
    else if (i + 1 < argv.length && !argv[i + 1]!.startsWith("--")) options.set(name, argv[++i]!);
    else throw new UsageError(`--${name} needs a value: expected ${spec.expected}`);
  }
  return { options, positionals, help };
}

/** The validated value of option `name`, or `fallback` when it was not given. */
export function get<T>(p: Parsed, specs: Record<string, OptionSpec<unknown>>, name: string, fallback: T): T {
  const raw = p.options.get(name);
  return raw === undefined ? fallback : (check(`--${name}`, raw, specs[name]!) as T);
}

export function defaultSimDir(env: Record<string, string | undefined> = process.env, uid = process.getuid?.() ?? 0): string {
  return env.XDG_RUNTIME_DIR ? resolve(env.XDG_RUNTIME_DIR, "qnicd-sim") : `/tmp/qnicd-sim-${uid}`;
}

export const dirOption = option({ expected: "a directory path", schema: schemas.dir });
export const noWaitOption = option({ expected: "no value (a flag)", schema: v.literal("true"), boolean: true });
export const netfrontOption = option({ expected: "no value (a flag)", schema: v.literal("true"), boolean: true });
export const ipOption = option({ expected: "an IPv4 address like 10.0.0.2", schema: v.pipe(v.string(), v.ipv4()) });
