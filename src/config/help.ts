// --help, generated from the settings table so it cannot drift from what loadConfig accepts.
import { CONFIG_FILE_ENV, CONFIG_FILE_FLAG, DEFAULT_CONFIG_FILE, SETTINGS, SETTING_KEYS, envName, flagName, type SettingDef } from "./settings.ts";
import { formatHttpAddress, type HttpAddress } from "./http-address.ts";

// Defaults that depend on the host are described (defaultHelp), so this context is never consulted
// for them; the help text is the same on every machine.
const neutral = { env: {}, cpuCount: 1, uid: 0 };

function describeDefault(def: SettingDef<unknown>): string {
  if (def.defaultHelp !== undefined) return def.defaultHelp;
  const d = def.default(neutral);
  if (typeof d === "object" && d !== null && "port" in d) return formatHttpAddress(d as HttpAddress);
  return String(d);
}

export function helpText(): string {
  const lines = [
    "Usage: qnicd [--name VALUE ...]   (from a checkout: npm run qnicd -- [--name VALUE ...])",
    "",
    "qnicd serves Xen PV network devices (netback) from userspace.",
    "Every setting can also be given as an environment variable or in a JSON file (--config) whose",
    'keys are the option names, e.g. {"workers": 4, "peer": "switch"}.',
    "Precedence: options > environment > config file > defaults.",
    "",
  ];
  const entry = (usage: string, help: string, detail: string) => {
    lines.push(`  ${usage}`, `      ${help}`, `      ${detail}`);
  };
  entry(`--${CONFIG_FILE_FLAG} FILE`, "read settings from a JSON file", `default ${DEFAULT_CONFIG_FILE} when it exists; env ${CONFIG_FILE_ENV}`);
  for (const key of SETTING_KEYS) {
    const def: SettingDef<unknown> = SETTINGS[key];
    const flag = flagName(key);
    const usage = def.boolean ? `--${flag}` : `--${flag} ${def.metavar ?? "VALUE"}`;
    entry(usage, def.help, `${def.expected}; default ${describeDefault(def)}; env ${envName(key)}`);
  }
  entry("--version", "print qnicd's version (and git commit, when run from a checkout) and exit", "");
  entry("--help, -h", "print this help and exit", "");
  return lines.join("\n").replace(/\s+$/, "") + "\n";
}
