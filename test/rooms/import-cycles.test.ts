// The rooms (src/<room>/ and workers/, DESIGN "Seams that must hold") depend on each other one way
// only: a cycle between two rooms means neither can be read, tested or replaced without the other.
// Read from the import statements themselves (static, `import type`, re-exports and dynamic
// import()), so a type-only import counts too: it ties the rooms' shapes together all the same.
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";

const REPO = join(import.meta.dir, "../..");
const SPECIFIER = /(?:^|[\s;}])(?:import|export)\s[^;]*?\sfrom\s*["']([^"']+)["']|(?:^|[\s;}])import\s*["']([^"']+)["']|\bimport\(\s*["']([^"']+)["']\s*\)/g;

/** The room of a repository path: "workers", "src/<room>", or null (src/*.ts are the composition root, not a room). */
export function roomOf(path: string): string | null {
  const parts = normalize(path).split("/");
  if (parts[0] === "workers") return "workers";
  if (parts[0] === "src" && parts.length > 2) return `src/${parts[1]}`;
  return null;
}

/** Relative module specifiers of a file's import and export statements (comments stripped first). */
export function importsOf(source: string): string[] {
  const code = source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|[^:"'`])\/\/.*$/gm, "$1");
  const out: string[] = [];
  for (const m of code.matchAll(SPECIFIER)) {
    const s = m[1] ?? m[2] ?? m[3];
    if (s.startsWith(".")) out.push(s);
  }
  return out;
}

/** Room -> room -> the files that make that edge. */
type RoomGraph = Map<string, Map<string, string[]>>;

function listTs(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(REPO, dir), { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...listTs(p));
    else if (/\.(ts|mts|tsx)$/.test(e.name)) out.push(p);
  }
  return out;
}

function repositoryGraph(): RoomGraph {
  const g: RoomGraph = new Map();
  for (const file of [...listTs("src"), ...listTs("workers")]) {
    const from = roomOf(file);
    if (!from) continue;
    for (const spec of importsOf(readFileSync(join(REPO, file), "utf8"))) {
      const to = roomOf(relative(REPO, join(REPO, dirname(file), spec)));
      if (!to || to === from) continue;
      const edges = g.get(from) ?? new Map<string, string[]>();
      g.set(from, edges);
      edges.set(to, [...(edges.get(to) ?? []), file]);
    }
  }
  return g;
}

/** Every cycle's rooms (strongly connected components of more than one room, Tarjan), with the files of each edge inside it. */
export function roomCycles(g: RoomGraph): string[] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  let next = 0;
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of g.get(v)?.keys() ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const c: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        c.push(w);
      } while (w !== v);
      if (c.length > 1) components.push(c.sort());
    }
  };
  for (const v of g.keys()) if (!index.has(v)) visit(v);
  return components.map((c) => {
    const edges: string[] = [];
    for (const a of c) for (const [b, files] of g.get(a) ?? []) if (c.includes(b)) edges.push(`${a} -> ${b} (${[...new Set(files)].join(", ")})`);
    return `${c.join(", ")}: ${edges.join("; ")}`;
  });
}

describe("rooms", () => {
  test("no import cycle between rooms (src/<room>/ and workers/)", () => {
    const g = repositoryGraph();
    expect(g.size).toBeGreaterThan(5); // the reader found the rooms at all
    expect(roomCycles(g)).toEqual([]);
  });

  test("the cycle finder reports a cycle through three rooms and none in a chain", () => {
    const graph = (edges: [string, string][]): RoomGraph => {
      const g: RoomGraph = new Map();
      for (const [a, b] of edges) {
        if (!g.has(a)) g.set(a, new Map());
        g.get(a)!.set(b, [`${a}/x.ts`]);
      }
      return g;
    };
    expect(roomCycles(graph([["src/a", "src/b"], ["src/b", "src/c"], ["src/c", "src/a"], ["src/c", "workers"]]))).toEqual([
      "src/a, src/b, src/c: src/a -> src/b (src/a/x.ts); src/b -> src/c (src/b/x.ts); src/c -> src/a (src/c/x.ts)",
    ]);
    expect(roomCycles(graph([["workers", "src/pool"], ["src/pool", "src/net"]]))).toEqual([]);
  });

  test("imports are read from every statement form, never from comments", () => {
    const src = [
      'import { a } from "../net/peer.ts";',
      'import type { B } from "../pool/types.ts";',
      'export { c } from "../xen/devices.ts";',
      "import {\n  d,\n  e,\n} from '../stats/index.ts';",
      'import "../log.ts";',
      'const m = await import("../sim/paths.ts");',
      '// import { z } from "../http/app.ts";',
      '/* import { y } from "../capture/pcapng.ts"; */',
      'import { readFileSync } from "node:fs";',
    ].join("\n");
    expect(importsOf(src)).toEqual(["../net/peer.ts", "../pool/types.ts", "../xen/devices.ts", "../stats/index.ts", "../log.ts", "../sim/paths.ts"]);
    expect(roomOf("src/net/tap.ts")).toBe("src/net");
    expect(roomOf("workers/tx.ts")).toBe("workers");
    expect(roomOf("src/daemon.ts")).toBeNull();
  });
});
