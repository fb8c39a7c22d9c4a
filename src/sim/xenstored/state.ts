// Restart survival (the simulator's stand-in for xenstored live update): on clean shutdown the tree
// (values, child order, permissions) and the introduced domains go to a JSON file; a new daemon
// in the same run directory loads it. Connections, watches and transactions are not kept: clients
// reconnect and re-register, as they must after any xenstored restart.
import { existsSync, readFileSync, renameSync, unlinkSync, writeFileSync } from "node:fs";
import { formatPerm, parsePerm } from "./perms.ts";
import type { Store } from "./store.ts";

export interface DomainRecord {
  domid: number;
  mfn: string;
  port: number;
  target?: number;
}

interface StateFile {
  format: "qnicd-sim-xenstored";
  version: 1;
  generation: number;
  nodes: { path: string; value: string; perms: string[]; children: string[]; gen: number }[];
  domains: DomainRecord[];
}

export function saveState(file: string, store: Store, domains: DomainRecord[]): void {
  const state: StateFile = {
    format: "qnicd-sim-xenstored",
    version: 1,
    generation: store.generation,
    nodes: [...store.entries()].map(([path, n]) => ({
      path,
      value: n.value.toString("base64"),
      perms: n.perms.map(formatPerm),
      children: [...n.children],
      gen: n.gen,
    })),
    domains,
  };
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, JSON.stringify(state));
  renameSync(tmp, file);
}

/** Load and consume the state file (a later crash must not bring back an old tree).
 *  Returns undefined if there is none; throws if it is unreadable. */
export function loadState(file: string, store: Store): DomainRecord[] | undefined {
  if (!existsSync(file)) return undefined;
  const state = JSON.parse(readFileSync(file, "utf8")) as StateFile;
  if (state.format !== "qnicd-sim-xenstored" || state.version !== 1) throw new Error(`unknown state format in ${file}`);
  store.clear();
  for (const n of state.nodes) {
    store.putWithGeneration(
      n.path,
      { value: Buffer.from(n.value, "base64"), children: n.children, perms: n.perms.map(parsePerm) },
      n.gen,
    );
  }
  store.generation = Math.max(store.generation, state.generation);
  if (!store.get("/")) throw new Error(`state in ${file} has no root node`);
  unlinkSync(file);
  return state.domains;
}
