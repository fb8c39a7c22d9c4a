// setBackendState's graph: every (state, target) pair reaches the target by the shortest path over
// the allowed edges only, with the right action on each edge.
import { describe, expect, test } from "bun:test";
import { nextStep, pathTo, type BackendState, type TargetState } from "../../src/backend/backend-state.ts";
import { XenbusState as S, xenbusStateName } from "../../src/xen/xenbus-state.ts";

const STATES: BackendState[] = [S.Initialising, S.InitWait, S.Connected, S.Closing, S.Closed];
const TARGETS: TargetState[] = [S.InitWait, S.Connected, S.Closing, S.Closed];

// The edges of Linux netback's set_backend_state, with what each one does.
const EDGES = new Map<string, string | null>([
  [`${S.Initialising}>${S.InitWait}`, "realize"],
  [`${S.Initialising}>${S.Closed}`, null],
  [`${S.InitWait}>${S.Connected}`, "connect"],
  [`${S.InitWait}>${S.Closing}`, null],
  [`${S.Connected}>${S.Closing}`, "disconnect"],
  [`${S.Closing}>${S.Closed}`, null],
  [`${S.Closed}>${S.InitWait}`, "realize"],
  [`${S.Closed}>${S.Closing}`, null],
]);

function bfs(from: BackendState, to: BackendState): number {
  const dist = new Map<number, number>([[from, 0]]);
  const queue: number[] = [from];
  while (queue.length) {
    const at = queue.shift()!;
    if (at === to) return dist.get(at)!;
    for (const e of EDGES.keys()) {
      const [a, b] = e.split(">").map(Number);
      if (a === at && !dist.has(b!)) {
        dist.set(b!, dist.get(at)! + 1);
        queue.push(b!);
      }
    }
  }
  return Infinity;
}

describe("pathTo", () => {
  for (const from of STATES) {
    for (const to of TARGETS) {
      test(`${xenbusStateName(from)} -> ${xenbusStateName(to)}: shortest path on allowed edges`, () => {
        const steps = pathTo(from, to);
        let at: BackendState = from;
        for (const s of steps) {
          const key = `${at}>${s.to}`;
          expect(EDGES.has(key)).toBe(true);
          expect(s.action as string | null).toBe(EDGES.get(key)!);
          at = s.to;
        }
        expect(at).toBe(to);
        expect(steps.length).toBe(from === to ? 0 : bfs(from, to));
      });
    }
  }
});

test("rings are only mapped from InitWait and only unmapped on leaving Connected", () => {
  for (const from of STATES)
    for (const to of TARGETS) {
      let at: BackendState = from;
      for (const s of pathTo(from, to)) {
        if (s.action === "connect") expect([at, s.to]).toEqual([S.InitWait, S.Connected]);
        if (at === S.Connected) expect(s.action).toBe("disconnect");
        at = s.to;
      }
    }
});

test("the reconnect after Closed goes through realize to InitWait", () => {
  expect(nextStep(S.Closed, S.InitWait)).toEqual({ action: "realize", to: S.InitWait });
  expect(pathTo(S.Connected, S.InitWait).map((s) => s.to)).toEqual([S.Closing, S.Closed, S.InitWait]);
});
