// One class for every configuration failure. Its message is a single line meant to be printed as is
// by the daemon before exiting: it names the setting (as the user spelled it: flag, env var or file
// key), the offending value and what would have been accepted.

export class ConfigError extends Error {
  readonly code = "QNICD_CONFIG";
  constructor(
    message: string,
    /** The setting's flag name without dashes ("workers"), or "" when no single setting is at fault. */
    readonly setting: string,
  ) {
    super(oneLine(message));
    this.name = "ConfigError";
  }
}

/** `qnicd: --workers: "abc" is not valid: expected an integer from 1 to 256` */
export function invalidValue(setting: string, where: string, value: string, expected: string): ConfigError {
  return new ConfigError(`qnicd: ${where}: ${JSON.stringify(value)} is not valid: expected ${expected}`, setting);
}

// Causes (a JSON parse error, a file error) are embedded in the message; keep it one line regardless.
function oneLine(s: string): string {
  return s.replace(/\s*[\r\n]+\s*/g, " ");
}
