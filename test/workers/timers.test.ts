// The worker's timer facility: poll()'s timeout is the nearest deadline, due timers fire once and
// disarm, and removal never disturbs the others.
import { expect, test } from "bun:test";
import { Timers } from "../../workers/timers.ts";

test("no armed timer: poll() waits forever (-1); the nearest armed deadline sets the timeout, rounded up", () => {
  const t = new Timers();
  const a = t.create("a", () => {});
  const b = t.create("b", () => {});
  expect(t.timeout(1000)).toBe(-1);
  t.arm(a, 1500.2);
  t.arm(b, 1200);
  expect(t.timeout(1000)).toBe(200);
  t.disarm(b);
  expect(t.timeout(1000)).toBe(501);
  expect(t.timeout(2000)).toBe(0); // overdue: poll only looks
});

test("due timers fire once, in any order of arming, and are disarmed when they fire", () => {
  const fired: string[] = [];
  const t = new Timers();
  const a = t.create("a", () => fired.push("a"));
  const b = t.create("b", () => fired.push("b"));
  const c = t.create("c", () => fired.push("c"));
  t.arm(a, 10);
  t.arm(b, 30);
  t.arm(c, 20);
  expect(t.fireDue(25)).toBe(2);
  expect(fired.sort()).toEqual(["a", "c"]);
  expect([a.armed, b.armed, c.armed]).toEqual([false, true, false]);
  expect(t.fireDue(25)).toBe(0);
  expect(t.fireDue(30)).toBe(1);
  expect(fired).toContain("b");
});

test("a firing timer may re-arm itself (a periodic deadline) and is not fired twice in one pass", () => {
  const t = new Timers();
  let n = 0;
  const p = t.create("periodic", (now) => {
    n++;
    t.arm(p, now + 50);
  });
  t.arm(p, 100);
  t.fireDue(100);
  expect(n).toBe(1);
  expect(p.at).toBe(150);
});

test("removing a timer keeps the others and their deadlines", () => {
  const t = new Timers();
  const timers = ["a", "b", "c", "d"].map((name) => t.create(name, () => {}));
  timers.forEach((x, i) => t.arm(x, 100 + i));
  t.remove(timers[1]!);
  t.remove(timers[1]!); // twice is fine
  expect(t.size).toBe(3);
  expect(t.timeout(0)).toBe(100);
  t.remove(timers[0]!);
  expect(t.timeout(0)).toBe(102);
  expect(timers[1]!.armed).toBe(false);
});
