// Splits the command line into flag -> text. Validation happens later, in one place for all sources.
import { ConfigError } from "./config-error.ts";

export interface ParsedArgv {
  /** Flag name without dashes -> its text; a bare boolean flag is "true". The last occurrence wins. */
  values: Map<string, string>;
  help: boolean;
}

export interface FlagSpec {
  /** Written bare (`--http-public`); `--http-public=false` is still accepted. */
  boolean: boolean;
  /** Completes "expected ..." when the value is missing. */
  expected: string;
}

/**
 * `--name VALUE`, `--name=VALUE`, and bare `--name` for boolean flags. Only flags in `flags` are
 * accepted; anything else is an error, so a typo never silently means "the default".
 */
export function parseArgv(argv: readonly string[], flags: ReadonlyMap<string, FlagSpec>): ParsedArgv {
  const values = new Map<string, string>();
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--help" || arg === "-h") {
      help = true;
      continue;
    }
    const m = /^--([a-z][a-z-]*)(?:=(.*))?$/s.exec(arg);
    if (!m) {
      throw new ConfigError(`qnicd: unexpected argument ${JSON.stringify(arg)}: settings are given as --name VALUE (see --help)`, "");
    }
    const [, name, inline] = m;
    const spec = flags.get(name);
    if (!spec) {
      throw new ConfigError(`qnicd: --${name}: unknown option (see --help for the list)`, name);
    }
    if (inline !== undefined) {
      values.set(name, inline);
    } else if (spec.boolean) {
      values.set(name, "true");
    } else if (i + 1 < argv.length && !argv[i + 1].startsWith("--")) {
      values.set(name, argv[++i]);
    } else {
      throw new ConfigError(`qnicd: --${name}: a value is required: expected ${spec.expected}`, name);
    }
  }
  return { values, help };
}
