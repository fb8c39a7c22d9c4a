import { expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { simPaths } from "../../../src/sim/paths.ts";

const DEMO = join(import.meta.dir, "../../../src/sim/demo.ts");

/** Processes whose command line mentions `needle` (other than zombies). */
function processesMentioning(needle: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, "utf8");
      if (stat[stat.lastIndexOf(")") + 2] === "Z") continue;
      if (readFileSync(`/proc/${e}/cmdline`, "utf8").includes(needle)) out.push(Number(e));
    } catch {}
  }
  return out;
}

test("the demo shows two guests' vif nodes and leaves nothing behind", async () => {
  const p = Bun.spawn([process.execPath, DEMO], { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  expect({ code, err }).toEqual({ code: 0, err: "" });
  for (const domid of [1, 2]) {
    expect(out).toContain(`/local/domain/0/backend/vif/${domid}/0/state = "1"`);
    expect(out).toContain(`/local/domain/${domid}/device/vif/0/backend = "/local/domain/0/backend/vif/${domid}/0"`);
  }
  expect(out).toContain('/local/domain/1/name = "alice"');
  expect(out).toContain("no backend is running yet");
  const hostDir = /simulated Xen host up in (\S+)/.exec(out)![1]!;
  expect(out).toContain("host stopped (destroyed alice, bob)");
  expect(existsSync(hostDir)).toBe(false);
  expect(existsSync(simPaths(hostDir).shmDir)).toBe(false);
  expect(processesMentioning(hostDir)).toEqual([]);
});
