// The daemon's logger: one line per event, as text for a terminal or JSON for a collector.
//
//   2026-11-21T13:00:00.000Z info  vif3.0: frontend connected rings=1 mtu=1500
//   {"time":"2026-11-21T13:00:00.000Z","level":"info","name":"vif3.0","msg":"frontend connected","rings":1}
//
// When stderr is the systemd journal, the journal stamps and ranks each line itself: a line then
// starts with its syslog priority and carries no time of its own ("<6>vif3.0: frontend connected").
// Lines about one vif are rate-limited per vif (log-limiter.ts): a guest decides how often they
// happen. Lines are written synchronously so the last words before a crash are not lost in a buffer.
import { stderrIsJournal, SYSLOG_PRIORITY } from "./journal-stream.ts";
import { DEFAULT_VIF_LOG_LIMIT, suppressedMessage, VifLogLimiter, vifOf, type VifLogLimit } from "./log-limiter.ts";

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
  /** Clock, injectable so tests can pin the timestamp; when given, it also drives the per-vif limit (else a monotonic clock does). */
  now?: () => Date;
  name?: string;
  /** Lines in journald's form (priority prefix, no time). Default: when stderr is the journal and `write` is not given. */
  journal?: boolean;
  /** Per-vif limit on lines (default DEFAULT_VIF_LOG_LIMIT); false: none. */
  vifLimit?: VifLogLimit | false;
  /**
   * Runs `fn` after `ms`, for the account of a window that closes while its vif is quiet.
   * Default: an unref'd setTimeout (a pending account never keeps the process up).
   */
  setTimer?: (fn: () => void, ms: number) => void;
}

const rank: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

function writeStderr(line: string): void {
  process.stderr.write(line + "\n");
}

function unrefTimer(fn: () => void, ms: number): void {
  setTimeout(fn, ms).unref?.();
}

type Format = (time: string | undefined, level: LogLevel, name: string | undefined, msg: string, fields?: LogFields) => string;

export function createLogger(opts: LoggerOptions): Logger {
  const write = opts.write ?? writeStderr;
  const now = opts.now ?? (() => new Date());
  const min = rank[opts.level];
  const journal = opts.journal ?? (opts.write === undefined && stderrIsJournal());
  const base: Format = opts.format === "json" ? formatJson : formatText;
  const format: Format = journal ? (_t, level, name, msg, fields) => `<${SYSLOG_PRIORITY[level]}>${base(undefined, level, name, msg, fields)}` : base;
  const line = (level: LogLevel, name: string | undefined, msg: string, fields?: LogFields) => write(format(now().toISOString(), level, name, msg, fields));

  const limiter = opts.vifLimit === false ? undefined : new VifLogLimiter(opts.vifLimit ?? DEFAULT_VIF_LOG_LIMIT);
  // Windows run on a monotonic clock: a wall clock set back would hold a vif's lines back for as long.
  const ms = opts.now ? () => now().getTime() : () => performance.now();
  const setTimer = opts.setTimer ?? unrefTimer;
  // Only lines at or above the level are counted, so the account is written even at --log-level error.
  const summaryLevel: LogLevel = min <= rank.warn ? "warn" : "error";
  const summary = (s: Parameters<typeof suppressedMessage>[0]) => line(summaryLevel, opts.name, suppressedMessage(s));
  // One timer, for the earliest window that ends, so its account is written even if its vif went
  // quiet. A window opened later ends later, so a running timer stays the right one; when it
  // fires it closes what ended and aims at the next.
  // It fires a little after the earliest end (a tenth of a window, at most 1 s), so the windows
  // that end close together are closed in one wake-up: after 1000 vifs connected in a few seconds,
  // one timer per window's end woke the daemon ~100 times a second for the next 10 s.
  let timerSet = false;
  const slack = limiter ? Math.min(1000, (opts.vifLimit || DEFAULT_VIF_LOG_LIMIT).windowMs / 10) : 0;
  const arm = () => {
    const at = limiter!.nextExpiry();
    if (at === undefined) return;
    timerSet = true;
    setTimer(() => {
      timerSet = false;
      for (const s of limiter!.expire(Math.max(at, ms()))) summary(s);
      arm();
    }, Math.max(0, at + slack - ms()));
  };

  const make = (name: string | undefined): Logger => {
    const emit = (level: LogLevel) => (msg: string, fields?: LogFields) => {
      if (rank[level] < min) return;
      const vif = limiter && vifOf(name, msg, fields);
      if (vif) {
        const v = limiter!.admit(vif, ms());
        if (v.closed) summary(v.closed);
        if (!timerSet) arm();
        if (!v.write) return;
      }
      line(level, name, msg, fields);
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

function formatText(time: string | undefined, level: LogLevel, name: string | undefined, msg: string, fields?: LogFields): string {
  // Without a time (journald) the priority prefix says the level too.
  let line = `${time === undefined ? "" : `${time} ${level.padEnd(5)} `}${name ? name + ": " : ""}${oneLine(msg)}`;
  if (fields) {
    for (const [k, v] of Object.entries(fields)) line += ` ${k}=${textValue(v)}`;
  }
  return line;
}

function formatJson(time: string | undefined, level: LogLevel, name: string | undefined, msg: string, fields?: LogFields): string {
  // Fixed keys first and written last-wins-proof: a field called "msg" must not replace the message.
  const out: Record<string, unknown> = {};
  if (fields) for (const [k, v] of Object.entries(fields)) out[k] = jsonValue(v);
  return JSON.stringify({ ...(time === undefined ? {} : { time }), level, ...(name ? { name } : {}), msg, ...withoutReserved(out) });
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
