// src/log.ts (with its per-vif limit and journald form) has no room of its own in test/; it lives
// beside the settings that choose its level and format.
import { expect, test } from "bun:test";
import { closeSync, fstatSync, mkdtempSync, openSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stderrIsJournal } from "../../src/journal-stream.ts";
import { createLogger, type LoggerOptions } from "../../src/log.ts";
import { VifLogLimiter, vifOf } from "../../src/log-limiter.ts";

function capture(opts: Pick<LoggerOptions, "level" | "format">) {
  const lines: string[] = [];
  const log = createLogger({ ...opts, write: (l) => lines.push(l), now: () => new Date("2026-11-21T13:00:00.000Z") });
  return { log, lines };
}

test("text lines carry time, padded level, name, message and key=value fields", () => {
  const { log, lines } = capture({ level: "info", format: "text" });
  log.child("vif3.0").info("frontend connected", { rings: 1, mac: "00:16:3e:00:00:01", why: "two words" });
  expect(lines).toEqual(['2026-11-21T13:00:00.000Z info  vif3.0: frontend connected rings=1 mac=00:16:3e:00:00:01 why="two words"']);
});

test("json lines are one object per event", () => {
  const { log, lines } = capture({ level: "debug", format: "json" });
  log.child("vif3.0").warn("bad request", { err: new Error("gref out of range"), msg: "forged" });
  expect(JSON.parse(lines[0])).toEqual({
    time: "2026-11-21T13:00:00.000Z",
    level: "warn",
    name: "vif3.0",
    msg: "bad request",
    err: "gref out of range",
    field_msg: "forged",
  });
});

test("lines below the level are dropped", () => {
  const { log, lines } = capture({ level: "warn", format: "text" });
  log.debug("a");
  log.info("b");
  log.warn("c");
  log.error("d");
  expect(lines.map((l) => l.split(" ").slice(1).join(" "))).toEqual(["warn  c", "error d"]);
});

test("a message with a newline stays on one line", () => {
  const { log, lines } = capture({ level: "info", format: "text" });
  log.info("from guest: a\nfake 2026 error line", { v: "x\ny" });
  expect(lines).toHaveLength(1);
  expect(lines[0]).not.toContain("\n");
});

// ---- per-vif rate limit (src/log-limiter.ts), on an injected clock and timer ----

function limited(limit = { burst: 3, windowMs: 10_000 }) {
  let t = Date.parse("2026-11-21T13:00:00.000Z");
  const timers: { fn: () => void; at: number }[] = [];
  const lines: string[] = [];
  const log = createLogger({
    level: "debug",
    format: "text",
    write: (l) => lines.push(l),
    now: () => new Date(t),
    vifLimit: limit,
    setTimer: (fn, ms) => void timers.push({ fn, at: t + ms }),
  });
  /** Moves the clock on and runs the timers that are due by then. */
  const advance = (ms: number) => {
    t += ms;
    for (let i = timers.findIndex((x) => x.at <= t); i >= 0; i = timers.findIndex((x) => x.at <= t)) timers.splice(i, 1)[0]!.fn();
  };
  const text = () => lines.map((l) => l.replace(/^\S+Z /, ""));
  return { log, lines, advance, text, timers };
}

test("lines about one vif: a burst is written, the rest counted and summarised when the window closes (within a tenth of a window, so windows ending together close in one wake-up)", () => {
  const { log, text, advance } = limited();
  for (let i = 0; i < 3915; i++) log.info(`vif5.0: backend Closed -> InitWait`);
  expect(text()).toEqual(["info  vif5.0: backend Closed -> InitWait", "info  vif5.0: backend Closed -> InitWait", "info  vif5.0: backend Closed -> InitWait"]);
  advance(10_999);
  expect(text()).toHaveLength(3);
  advance(1);
  expect(text().slice(3)).toEqual(["warn  vif5.0: 3,912 similar lines suppressed in the last 10 s"]);
  // A new window: a new burst.
  log.error("vif5.0: saw state 9 at frontend");
  expect(text().at(-1)).toBe("error vif5.0: saw state 9 at frontend");
});

test("one noisy vif silences neither another vif nor the daemon's own lines", () => {
  const { log, text, advance } = limited();
  const pool = log.child("pool");
  for (let i = 0; i < 100; i++) log.warn("vif5.0: noisy");
  log.info("vif6.0: connected");
  log.info("xenstore reconnected: re-reading every device");
  pool.error("worker 1 died; released nothing; moving 2 vifs");
  pool.warn("vif fault: tx packet at 0x10 continues past req_prod 0x11", { key: "vif6.0#1", errno: 71 });
  log.info("vif7.0: connected", { key: "vif7.0#3" });
  expect(text().slice(3)).toEqual([
    "info  vif6.0: connected",
    "info  xenstore reconnected: re-reading every device",
    "error pool: worker 1 died; released nothing; moving 2 vifs",
    "warn  pool: vif fault: tx packet at 0x10 continues past req_prod 0x11 key=vif6.0#1 errno=71",
    "info  vif7.0: connected key=vif7.0#3",
  ]);
  advance(11_000);
  expect(text().slice(8)).toEqual(["warn  vif5.0: 97 similar lines suppressed in the last 10 s"]);
});

test("a pool line about a vif (its connection key) and a logger named after a vif count towards that vif", () => {
  const { log, text, advance } = limited({ burst: 1, windowMs: 1000 });
  log.child("pool").warn("vif fault: bad", { key: "vif5.0#2" });
  log.child("vif5.0").info("frontend connected");
  log.info("vif5.0: connected");
  advance(1100);
  expect(text()).toEqual(["warn  pool: vif fault: bad key=vif5.0#2", "warn  vif5.0: 2 similar lines suppressed in the last 1 s"]);
});

test("a vif that logs again after its window, before the timer ran, gets its account first", () => {
  const { log, text, advance, timers } = limited({ burst: 1, windowMs: 1000 });
  log.info("vif5.0: a");
  log.info("vif5.0: b");
  timers.length = 0; // the timer is late (a busy event loop)
  advance(1500);
  log.info("vif5.0: c");
  expect(text()).toEqual(["info  vif5.0: a", "warn  vif5.0: 1 similar line suppressed in the last 1 s", "info  vif5.0: c"]);
});

test("a window without suppression closes silently, and closed windows are forgotten", () => {
  const limiter = new VifLogLimiter({ burst: 2, windowMs: 1000 });
  for (let v = 0; v < 100; v++) expect(limiter.admit(`vif${v}.0`, 0).write).toBe(true);
  expect(limiter.open).toBe(100);
  expect(limiter.nextExpiry()).toBe(1000);
  expect(limiter.expire(999)).toEqual([]);
  expect(limiter.expire(1000)).toEqual([]);
  expect(limiter.open).toBe(0);
  expect(limiter.nextExpiry()).toBeUndefined();
});

test("at --log-level error the account of suppressed errors is itself an error line", () => {
  let t = 0;
  const timers: (() => void)[] = [];
  const lines: string[] = [];
  const log = createLogger({ level: "error", format: "text", write: (l) => lines.push(l), now: () => new Date(t), vifLimit: { burst: 1, windowMs: 1000 }, setTimer: (fn) => void timers.push(fn) });
  log.info("vif5.0: not counted, below the level");
  log.error("vif5.0: one");
  log.error("vif5.0: two");
  t = 1000;
  timers.shift()!();
  expect(lines.map((l) => l.replace(/^\S+Z /, ""))).toEqual(["error vif5.0: one", "error vif5.0: 1 similar line suppressed in the last 1 s"]);
});

test("vifLimit: false writes every line", () => {
  const lines: string[] = [];
  const log = createLogger({ level: "info", format: "text", write: (l) => lines.push(l), vifLimit: false });
  for (let i = 0; i < 500; i++) log.info("vif5.0: again");
  expect(lines).toHaveLength(500);
});

test("which vif a line is about", () => {
  expect(vifOf(undefined, "vif3.0: connected")).toBe("vif3.0");
  expect(vifOf(undefined, "qnic12.1: connected")).toBe("qnic12.1"); // --vifname-prefix
  expect(vifOf("pool", "vif fault: x", { key: "vif3.0#17" })).toBe("vif3.0");
  expect(vifOf("vif3.0", "frontend connected")).toBe("vif3.0");
  expect(vifOf(undefined, "xenstore: connection lost")).toBeUndefined();
  expect(vifOf(undefined, "serving /local/domain/0/backend/vif")).toBeUndefined();
  expect(vifOf("http", "GET /vifs/vif3.0 404")).toBeUndefined();
  expect(vifOf(undefined, "worker 1 died", { key: "3/0" })).toBeUndefined();
});

// ---- journald (src/journal-stream.ts) ----

test("journal lines: syslog priority prefix, no timestamp of their own", () => {
  const lines: string[] = [];
  const log = createLogger({ level: "debug", format: "text", journal: true, write: (l) => lines.push(l), now: () => new Date("2026-11-21T13:00:00.000Z") });
  log.error("vif3.0: closed", { errno: 22 });
  log.warn("xenstore: lost");
  log.info("serving /local/domain/0/backend/vif");
  log.child("pool").debug("workers stopped");
  expect(lines).toEqual(["<3>vif3.0: closed errno=22", "<4>xenstore: lost", "<6>serving /local/domain/0/backend/vif", "<7>pool: workers stopped"]);
  const json: string[] = [];
  createLogger({ level: "info", format: "json", journal: true, write: (l) => json.push(l) }).warn("vif3.0: x");
  expect(json[0]!.slice(0, 3)).toBe("<4>");
  expect(JSON.parse(json[0]!.slice(3))).toEqual({ level: "warn", msg: "vif3.0: x" });
});

test("stderr is the journal only when $JOURNAL_STREAM names stderr's own device and inode", () => {
  const dir = mkdtempSync(join(tmpdir(), "qnicd-journal-"));
  const fd = openSync(join(dir, "stream"), "w");
  const other = openSync(join(dir, "other"), "w");
  try {
    const st = fstatSync(fd, { bigint: true });
    const mine = `${st.dev}:${st.ino}`;
    expect(stderrIsJournal({ JOURNAL_STREAM: mine }, fd)).toBe(true);
    // Inherited by a child whose stderr went elsewhere: not the journal.
    expect(stderrIsJournal({ JOURNAL_STREAM: mine }, other)).toBe(false);
    expect(stderrIsJournal({}, fd)).toBe(false);
    expect(stderrIsJournal({ JOURNAL_STREAM: "" }, fd)).toBe(false);
    expect(stderrIsJournal({ JOURNAL_STREAM: `${st.dev}:${st.ino}:1` }, fd)).toBe(false);
    expect(stderrIsJournal({ JOURNAL_STREAM: `${st.dev}:${st.ino + 1n}` }, fd)).toBe(false);
  } finally {
    closeSync(fd);
    closeSync(other);
    rmSync(dir, { recursive: true, force: true });
  }
});

test("windows that end close together (within a tenth of a window) are closed in one wake-up, not one each", () => {
  let t = 0;
  const due: { fn: () => void; at: number }[] = [];
  let armed = 0;
  const lines: string[] = [];
  const log = createLogger({
    level: "info",
    format: "text",
    write: (l) => lines.push(l),
    now: () => new Date(t),
    vifLimit: { burst: 1, windowMs: 10_000 },
    setTimer: (fn, ms) => {
      armed++;
      due.push({ fn, at: t + ms });
    },
  });
  // 50 vifs each over their burst, 10 ms apart (a mass connect).
  for (let i = 0; i < 50; i++, t += 10) {
    log.info(`vif${i}.0: connected`);
    log.info(`vif${i}.0: again`);
  }
  for (t = 10_000; t <= 12_000; t += 10) for (let i = due.findIndex((x) => x.at <= t); i >= 0; i = due.findIndex((x) => x.at <= t)) due.splice(i, 1)[0]!.fn();
  expect(lines.filter((l) => l.includes("suppressed")).length).toBe(50);
  expect(armed).toBeLessThanOrEqual(2);
});
