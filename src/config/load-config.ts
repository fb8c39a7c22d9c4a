// Builds the daemon's Config from the command line, the environment and an optional JSON file.
// Precedence: flags > env (QNICD_*) > file (--config / QNICD_CONFIG, else /etc/qnicd/qnicd.json
// when it exists) > defaults.
import { existsSync, readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import * as v from "valibot";
import { parseArgv, type FlagSpec } from "./argv.ts";
import { ConfigError, invalidValue } from "./config-error.ts";
import { isLoopbackHost } from "./http-address.ts";
import { lineColumn, scanJson } from "./json-scan.ts";
import {
  CONFIG_FILE_ENV,
  CONFIG_FILE_FLAG,
  DEFAULT_CONFIG_FILE,
  SETTINGS,
  SETTING_KEYS,
  envName,
  flagName,
  type DefaultsContext,
  type SettingDef,
  type SettingKey,
  type SettingValues,
} from "./settings.ts";

export interface Config extends SettingValues {
  /** The JSON file settings were read from, if any. */
  configFile: string | null;
}

export interface LoadConfigInput {
  argv: readonly string[];
  env: Readonly<Record<string, string | undefined>>;
  /** Reads the --config file; defaults to the filesystem. */
  readFile?: (path: string) => string;
  /**
   * The file read when neither --config nor QNICD_CONFIG names one, if it exists (default
   * /etc/qnicd/qnicd.json; null: none). Tests pass null so the machine's file cannot leak in.
   */
  defaultConfigFile?: string | null;
  /** Whether the default config file exists; defaults to the filesystem. */
  fileExists?: (path: string) => boolean;
  /** Defaults to the machine's CPU count (for --workers' default). */
  cpuCount?: number;
  /** Defaults to the process's uid (for --sim-dir's default). */
  uid?: number;
}

/** Where a setting's text came from, as the user would spell it in an error message. */
interface Sourced {
  text: string;
  where: string;
}

const CONFIG_FILE_EXPECTED = "a readable JSON file holding an object of settings";

export function flagSpecs(): Map<string, FlagSpec> {
  const specs = new Map<string, FlagSpec>();
  for (const key of SETTING_KEYS) {
    const def: SettingDef<unknown> = SETTINGS[key];
    specs.set(flagName(key), { boolean: def.boolean === true, expected: def.expected });
  }
  specs.set(CONFIG_FILE_FLAG, { boolean: false, expected: CONFIG_FILE_EXPECTED });
  return specs;
}

/** True when the command line asks for --help (checked before anything else can fail). */
export function isHelpRequested(argv: readonly string[]): boolean {
  return argv.includes("--help") || argv.includes("-h");
}

export function loadConfig(input: LoadConfigInput): Config {
  const { env } = input;
  const ctx: DefaultsContext = {
    env,
    cpuCount: input.cpuCount ?? availableParallelism(),
    uid: input.uid ?? process.getuid?.() ?? 0,
  };
  const flags = parseArgv(input.argv, flagSpecs()).values;

  const named = flags.get(CONFIG_FILE_FLAG) ?? nonEmpty(env[CONFIG_FILE_ENV]);
  const fallback = input.defaultConfigFile === undefined ? DEFAULT_CONFIG_FILE : input.defaultConfigFile;
  const configFile = named ?? (fallback !== null && (input.fileExists ?? existsSync)(fallback) ? fallback : null);
  const fromFile = configFile === null ? new Map<string, Sourced>() : readConfigFile(configFile, input.readFile ?? readUtf8);

  const values: Record<string, unknown> = {};
  const sources: Partial<Record<SettingKey, Sourced>> = {};
  for (const key of SETTING_KEYS) {
    const def: SettingDef<unknown> = SETTINGS[key];
    const flag = flagName(key);
    const flagText = flags.get(flag);
    const envText = nonEmpty(env[envName(key)]);
    const src: Sourced | undefined =
      flagText !== undefined
        ? { text: flagText, where: `--${flag}` }
        : envText !== undefined
          ? { text: envText, where: envName(key) }
          : fromFile.get(flag);
    if (src === undefined) {
      values[key] = def.default(ctx);
      continue;
    }
    const r = v.safeParse(def.schema, src.text);
    if (!r.success) throw invalidValue(flag, src.where, src.text, def.expected);
    values[key] = r.output;
    sources[key] = src;
  }
  const config = { ...(values as SettingValues), configFile };

  if (!config.httpPublic && !isLoopbackHost(config.http.host)) {
    const src = sources.http!; // the default is loopback, so a non-loopback host was given somewhere
    throw invalidValue(
      "http",
      src.where,
      src.text,
      "a loopback address (127.x.x.x, [::1] or localhost) unless --http-public is given, as the API has no authentication",
    );
  }
  return config;
}

function nonEmpty(s: string | undefined): string | undefined {
  // An empty QNICD_* variable is how shells unset things in practice; treat it as unset.
  return s === undefined || s === "" ? undefined : s;
}

function readUtf8(path: string): string {
  return readFileSync(path, "utf8");
}

/**
 * The file's keys are the flag names ("sim-dir"); values may be JSON strings, numbers or booleans.
 * Every error names the file as path:line:column, where editors and `vim +line` take it.
 */
function readConfigFile(path: string, read: (path: string) => string): Map<string, Sourced> {
  let text: string;
  try {
    text = read(path);
  } catch (e) {
    throw new ConfigError(
      `qnicd: --config: ${JSON.stringify(path)} is not valid: expected ${CONFIG_FILE_EXPECTED} (${(e as Error).message})`,
      CONFIG_FILE_FLAG,
    );
  }
  const at = (offset: number) => {
    const { line, column } = lineColumn(text, offset);
    return `${path}:${line}:${column}`;
  };
  const scan = scanJson(text);
  if (scan.error) {
    throw new ConfigError(`qnicd: ${at(scan.error.offset)}: not valid JSON: ${scan.error.message} (the file must be ${CONFIG_FILE_EXPECTED})`, CONFIG_FILE_FLAG);
  }
  const parsed: unknown = JSON.parse(text);
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError(`qnicd: ${at(text.length - text.trimStart().length)}: expected ${CONFIG_FILE_EXPECTED}, found ${Array.isArray(parsed) ? "an array" : String(JSON.stringify(parsed))}`, CONFIG_FILE_FLAG);
  }
  const known = new Set(SETTING_KEYS.map(flagName));
  const out = new Map<string, Sourced>();
  for (const [name, value] of Object.entries(parsed)) {
    const pos = scan.members.get(name);
    if (!known.has(name)) {
      throw new ConfigError(`qnicd: ${at(pos?.key ?? 0)}: ${name}: unknown setting (see --help for the list)`, name);
    }
    out.set(name, { text: typeof value === "string" ? value : JSON.stringify(value), where: `${at(pos?.value ?? 0)}: ${name}` });
  }
  return out;
}
