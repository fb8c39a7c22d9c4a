// `bun run bench` in a minimal form, so it cannot rot: two fast scenarios (tx and latency) with
// --quick into a temporary --out dir, checking the shape of what it prints and writes. No timing
// assertions: the figures are whatever this machine measures.
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const REPO = resolve(import.meta.dir, "../..");
const out = mkdtempSync(join(tmpdir(), "qnicd-bench-test-"));
afterAll(() => rmSync(out, { recursive: true, force: true }));

function bench(args: string[]) {
  const p = Bun.spawnSync([process.execPath, join(REPO, "bench/run.ts"), ...args], { cwd: REPO, stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

/** Every tag closed in order, every attribute quoted: enough to call the hand-written SVG well-formed. */
function wellFormed(xml: string): string | null {
  const stack: string[] = [];
  const body = xml.replace(/<!--[\s\S]*?-->/g, "");
  for (const m of body.matchAll(/<(\/?)([a-zA-Z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g)) {
    const [, close, name, , self] = m;
    if (self) continue;
    if (close) {
      const open = stack.pop();
      if (open !== name) return `</${name}> closes <${open}>`;
    } else stack.push(name!);
  }
  if (stack.length) return `unclosed <${stack.join("> <")}>`;
  const stray = body.replace(/<(\/?)([a-zA-Z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g, "").match(/<|>/);
  return stray ? `a stray '${stray[0]}' (malformed tag)` : null;
}

describe("bun run bench", () => {
  test("an unknown scenario is one line listing the valid ones, exit 2", () => {
    const r = bench(["nosuch"]);
    expect({ code: r.code, lines: r.stderr.trim().split("\n").length }).toEqual({ code: 2, lines: 1 });
    expect(r.stderr).toContain("tx, rx, bidir, gso, switch, tap, latency, seed, vifs, workers, rate");
  });

  test("tx and latency --quick: the table, bench.json and bench.svg", () => {
    const r = bench(["tx", "latency", "--quick", "--out", out]);
    // stderr carries the scenarios' progress and any failure: show it first.
    expect({ code: r.code, stderr: r.code === 0 ? "" : r.stderr }).toEqual({ code: 0, stderr: "" });

    expect(r.stdout).toContain("quick run");
    expect(r.stdout).toMatch(/^tx \(ok, [\d.]+ s\)$/m);
    expect(r.stdout).toMatch(/qnicd tx\s+C reference tx\s+generator alone/);
    expect(r.stdout).toMatch(/ratio\s+qnicd \/ C reference, tx 64 B\s+[\d.]+\s+goal 0\.70/);
    expect(r.stdout).toMatch(/^latency \(ok, [\d.]+ s\)$/m);
    expect(r.stdout).toContain("round trip p99");

    const json = JSON.parse(readFileSync(join(out, "bench.json"), "utf8"));
    expect(json.quick).toBe(true);
    for (const k of ["cpuModel", "cores", "memoryBytes", "kernel", "bun", "date", "commit", "quick"]) expect(json.machine).toHaveProperty(k);
    expect(json.machine.cores).toBeGreaterThan(0);
    expect(json.scenarios.map((s: { name: string; status: string }) => [s.name, s.status])).toEqual([
      ["tx", "ok"],
      ["latency", "ok"],
    ]);
    const tx = json.scenarios[0];
    expect(tx.figures.filter((f: { chart?: string }) => f.chart === "frame-size").map((f: { series: string; x: number }) => `${f.series} ${f.x}`).sort()).toEqual(
      ["C reference tx 1500", "C reference tx 512", "C reference tx 64", "qnicd tx 1500", "qnicd tx 512", "qnicd tx 64"],
    );
    for (const f of tx.figures) expect(Number.isFinite(f.value) && f.value > 0).toBe(true);
    expect(tx.ratios.map((q: { label: string; goal: number }) => [q.label, q.goal])).toEqual([
      ["qnicd / C reference, tx 64 B", 0.7],
      ["qnicd / C reference, tx 512 B", 0.7],
      ["qnicd / C reference, tx 1500 B", 0.7],
    ]);
    expect(Array.isArray(tx.invalid)).toBe(true);
    const lat = json.scenarios[1];
    expect(lat.figures.map((f: { label: string; series: string; unit: string }) => `${f.label} / ${f.series} / ${f.unit}`)).toContain("round trip median / event channel alone / us");
    expect(lat.ratios.length).toBeGreaterThan(0);

    // The last real-Xen figures (the e2e writes them) under the table, or where they would come from.
    expect(r.stdout).toMatch(/^(real Xen under QEMU \(.*sha256 checked|real Xen: no figures yet \(npm run test:xen records them in .*xen-throughput\.json\))$/m);
    expect(json).toHaveProperty("realXen");

    const svg = readFileSync(join(out, "bench.svg"), "utf8");
    expect(svg.startsWith("<svg xmlns=\"http://www.w3.org/2000/svg\"")).toBe(true);
    expect(wellFormed(svg)).toBeNull();
    const series = [...svg.matchAll(/data-series="([^"]+)"/g)].map((m) => m[1]);
    expect(series).toEqual(["qnicd tx", "C reference tx"]);
    expect(svg).toContain("by worker count");
    expect(svg).toContain("frame size (bytes)");
  }, 120_000);

  test("the results dir is gitignored (runs never dirty the checkout)", () => {
    for (const f of ["bench/results/bench.json", "bench/results/xen-throughput.json"]) {
      const r = Bun.spawnSync(["git", "-C", REPO, "check-ignore", f], { stdout: "pipe" });
      expect(r.exitCode === 0 || !existsSync(join(REPO, ".git"))).toBe(true);
    }
  });
});
