// src/log.ts has no room of its own in test/; it lives beside the settings that choose its level and format.
import { expect, test } from "bun:test";
import { createLogger, type LoggerOptions } from "../../src/log.ts";

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
