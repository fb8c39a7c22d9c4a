// The daemon's logger: one line per event, as text for a terminal or JSON for a collector.
//
//   2026-11-21T13:00:00.000Z info  vif3.0: frontend connected rings=1 mtu=1500
//   {"time":"2026-11-21T13:00:00.000Z","level":"info","name":"vif3.0","msg":"frontend connected","rings":1}
//
// Lines are written synchronously so the last words before a crash are not lost in a buffer.

export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const LOG_FORMATS = ["text", "json"] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger whose lines carry `name` (e.g. "vif3.0"); nested names join with '/'. */
  child(name: string): Logger;
}

export interface LoggerOptions {
  level: LogLevel;
  format: LogFormat;
  /** Where a finished line (without newline) goes; defaults to stderr. */
  write?: (line: string) => void;
  /** Clock, injectable so tests can pin the timestamp. */
  now?: () => Date;
  name?: string;
}

const rank: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

function writeStderr(line: string): void {
  process.stderr.write(line + "\n");
}

export function createLogger(opts: LoggerOptions): Logger {
  const write = opts.write ?? writeStderr;
  const now = opts.now ?? (() => new Date());
  const min = rank[opts.level];
  const format = opts.format === "json" ? formatJson : formatText;

  const make = (name: string | undefined): Logger => {
    const emit = (level: LogLevel) => (msg: string, fields?: LogFields) => {
      if (rank[level] < min) return;
      write(format(now().toISOString(), level, name, msg, fields));
    };
    return {
      debug: emit("debug"),
      info: emit("info"),
      warn: emit("warn"),
      error: emit("error"),
      child: (sub) => make(name ? `${name}/${sub}` : sub),
    };
  };
  return make(opts.name);
}

function formatText(time: string, level: LogLevel, name: string | undefined, msg: string, fields?: LogFields): string {
  let line = `${time} ${level.padEnd(5)} ${name ? name + ": " : ""}${oneLine(msg)}`;
  if (fields) {
    for (const [k, v] of Object.entries(fields)) line += ` ${k}=${textValue(v)}`;
  }
  return line;
}

function formatJson(time: string, level: LogLevel, name: string | undefined, msg: string, fields?: LogFields): string {
  // Fixed keys first and written last-wins-proof: a field called "msg" must not replace the message.
  const out: Record<string, unknown> = {};
  if (fields) for (const [k, v] of Object.entries(fields)) out[k] = jsonValue(v);
  return JSON.stringify({ time, level, ...(name ? { name } : {}), msg, ...withoutReserved(out) });
}

const reserved = new Set(["time", "level", "name", "msg"]);
function withoutReserved(o: Record<string, unknown>): Record<string, unknown> {
  const r: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) r[reserved.has(k) ? `field_${k}` : k] = v;
  return r;
}

function jsonValue(v: unknown): unknown {
  if (v instanceof Error) return v.message;
  if (typeof v === "bigint") return v.toString();
  return v;
}

/** A message is one line: a guest-controlled string with a newline must not forge a second entry. */
function oneLine(s: string): string {
  return /[\r\n]/.test(s) ? JSON.stringify(s).slice(1, -1) : s;
}

function textValue(v: unknown): string {
  if (v instanceof Error) v = v.message;
  if (typeof v === "string") return /^[^\s"=\\]+$/.test(v) ? v : JSON.stringify(v);
  if (typeof v === "bigint") return v.toString();
  if (v === undefined) return "undefined";
  if (typeof v === "object" && v !== null) return JSON.stringify(v);
  return String(v);
}
