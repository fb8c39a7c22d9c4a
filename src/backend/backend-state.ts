// The backend's side of the XenbusState handshake, as a pure function: from the state the backend
// is in to the state it should reach, which steps to take. The bus (xenbus.ts) performs them.
//
// The backend starts in Initialising and moves only along these edges (Linux netback's
// set_backend_state, whose graph this is):
//
//   Initialising --realize--> InitWait --connect--> Connected
//        |                     ^     \                  |
//        |             realize |      \                 | disconnect
//        |                     |       \                |
//        v                     |        v               v
//      Closed <--------------------------------------> Closing
//
//   Initialising -> Closed      a device closed before it was ever used
//   Closed -> InitWait          the frontend came back (reconnect after Closed)
//   Closed -> Closing           only to reach Closing from Closed
//   Closing -> Closed           every way out of Closing passes through Closed
//
// setBackendState walks the shortest path to the target, one edge per step. There is no edge into
// Connected except from InitWait, and none out of Connected except through a disconnect, so rings
// are never mapped twice and never left mapped behind a Closing or Closed state.
import { XenbusState, xenbusStateName } from "../xen/xenbus-state.ts";

/** The states the backend itself ever writes. */
export type BackendState =
  | typeof XenbusState.Initialising
  | typeof XenbusState.InitWait
  | typeof XenbusState.Connected
  | typeof XenbusState.Closing
  | typeof XenbusState.Closed;

/** A target the frontend (or the toolstack) can ask for; Initialising is never a target. */
export type TargetState = Exclude<BackendState, typeof XenbusState.Initialising>;

export type StepAction = "realize" | "connect" | "disconnect";

/** One edge: do `action` (if any), then be in `to`. */
export interface Step {
  readonly action: StepAction | null;
  readonly to: BackendState;
}

const S = XenbusState;

/** The next edge from `from` towards `target` (from !== target). */
export function nextStep(from: BackendState, target: TargetState): Step {
  switch (from) {
    case S.Initialising:
      return target === S.Closed ? { action: null, to: S.Closed } : { action: "realize", to: S.InitWait };
    case S.Closed:
      return target === S.Closing ? { action: null, to: S.Closing } : { action: "realize", to: S.InitWait };
    case S.InitWait:
      return target === S.Connected ? { action: "connect", to: S.Connected } : { action: null, to: S.Closing };
    case S.Connected:
      return { action: "disconnect", to: S.Closing };
    case S.Closing:
      return { action: null, to: S.Closed };
  }
}

/** Every edge from `from` to `target`, shortest first-to-last (empty when already there). */
export function pathTo(from: BackendState, target: TargetState): Step[] {
  const steps: Step[] = [];
  let at = from;
  while (at !== target) {
    const step = nextStep(at, target);
    steps.push(step);
    at = step.to;
    // The graph above reaches every target from every state in at most four edges.
    if (steps.length > 4) throw new Error(`backend state walk from ${xenbusStateName(from)} to ${xenbusStateName(target)} does not terminate`);
  }
  return steps;
}

export function isBackendState(n: number): n is BackendState {
  return n === S.Initialising || n === S.InitWait || n === S.Connected || n === S.Closing || n === S.Closed;
}
