// Discovery's cost: a new vif is found and handled without re-reading the vifs already served, so
// bringing up N vifs costs O(N) xenstore requests, not O(N^2) (the vifs bench scenario's connect time).
import { afterEach, expect, test } from "bun:test";
import { XenbusState as S } from "../../src/xen/xenbus-state.ts";
import { startBackendHarness, type BackendHarness } from "./harness.ts";

let h: BackendHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

test("a new guest's vif is found without listing or reading another guest's devices", async () => {
  h = await startBackendHarness();
  const a = await h.guest("alice", 3);
  for (const f of a.fronts) expect(await f.backendState()).toBe(S.InitWait);
  await h.backend.bus.idle();
  h.requests.length = 0;
  const b = await h.guest("bob", 2);
  for (const f of b.fronts) expect(await f.backendState()).toBe(S.InitWait);
  await h.backend.bus.idle();
  const touchingAlice = h.requests.filter((r) => r.includes(`/backend/vif/${a.domid}`) || r.includes(`/domain/${a.domid}/`));
  expect(touchingAlice).toEqual([]);
  // bob's devices were found (and read) all the same.
  expect(h.requests.some((r) => r.startsWith("READ") && r.includes(`/backend/vif/${b.domid}/1/state`))).toBe(true);
});

test("a vif removed while others stay is forgotten; the others keep being served", async () => {
  h = await startBackendHarness();
  const a = await h.guest("alice", 2);
  await h.backend.bus.idle();
  await h.host.xs.rm(a.fronts[1]!.B);
  const gone = `${a.domid}/1`;
  for (let i = 0; i < 200 && h.backend.bus.list().some((d) => d.key === gone); i++) await Bun.sleep(10);
  expect(h.backend.bus.list().map((d) => d.key)).toEqual([`${a.domid}/0`]);
  expect(await a.fronts[0]!.backendState()).toBe(S.InitWait);
});

test("a write under B to a node no run reads starts no run; a write to state, online or hotplug-status starts one that re-reads that node only", async () => {
  h = await startBackendHarness();
  const a = await h.guest("alice", 1);
  const f = a.fronts[0]!;
  expect(await f.backendState()).toBe(S.InitWait);
  await h.backend.bus.idle();
  const stateNodes = [`${f.B}/state`, `${f.B}/online`, `${f.B}/hotplug-status`, `${f.F}/state`];
  const readsSince = (n: number) => h!.requests.slice(n).filter((r) => r.startsWith("READ 0 ")).map((r) => r.slice("READ 0 ".length)).filter((p) => stateNodes.includes(p));
  let mark = h.requests.length;
  // What the toolstack writes beside the state nodes, and the feature nodes realize wrote itself.
  for (const node of ["script", "bridge", "feature-rx-copy", "queue-0/x"]) await h.host.xs.write(`${f.B}/${node}`, "1");
  await Bun.sleep(200);
  await h.backend.bus.idle();
  expect(readsSince(mark)).toEqual([]);
  for (const [node, value] of [["hotplug-status", "connected"], ["online", "1"], ["state", String(S.InitWait)]] as const) {
    mark = h.requests.length;
    await h.host.xs.write(`${f.B}/${node}`, value);
    for (let i = 0; i < 200 && readsSince(mark).length === 0; i++) await Bun.sleep(10);
    await h.backend.bus.idle();
    expect(readsSince(mark)).toEqual([`${f.B}/${node}`]);
  }
  // The frontend's state is re-read on its own watch's event, and only it.
  mark = h.requests.length;
  await f.setState(S.Initialising);
  for (let i = 0; i < 200 && readsSince(mark).length === 0; i++) await Bun.sleep(10);
  await h.backend.bus.idle();
  expect(readsSince(mark)).toEqual([`${f.F}/state`]);
  expect(await f.backendState()).toBe(S.InitWait);
});
