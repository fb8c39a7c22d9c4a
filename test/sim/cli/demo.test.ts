// `npm run demo` as a user runs it: its own process, qnicd and the guests as processes of their
// own, real TAPs and a bridge when root. Each run must ping across without loss, print the status
// API's URL, and leave nothing behind: no process, no /dev/shm file, no link, no temp dir.
import { expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
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

/** Links whose names start with any of `prefixes` ([] when `ip` is missing: then none were made). */
function links(prefixes: string[]): string[] {
  const r = spawnSync("ip", ["-o", "link", "show"], { encoding: "utf8" });
  return (r.stdout ?? "")
    .split("\n")
    .map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1])
    .filter((n): n is string => n !== undefined && prefixes.some((p) => n.startsWith(p)));
}

/** What the demo printed about itself, and a check that none of it is still there. */
function expectNothingLeft(out: string): void {
  const hostDir = /simulated Xen host up in (\S+)/.exec(out)?.[1];
  expect(hostDir).toBeDefined();
  const tmp = join(hostDir!, "..");
  expect(existsSync(tmp)).toBe(false);
  expect(existsSync(simPaths(hostDir!).shmDir)).toBe(false);
  expect(processesMentioning(hostDir!)).toEqual([]);
  const names = [/--bridge (\S+)/.exec(out)?.[1], /--vifname-prefix (\S+)/.exec(out)?.[1]].filter((n): n is string => !!n);
  expect(names.length).toBeGreaterThan(0);
  expect(links(names)).toEqual([]);
  expect(out).toContain(`removed ${tmp}`);
}

/** Every ping line of `pair` ("alice -> bob"): one per size, every one fully answered. */
function expectPingsAnswered(out: string, pair: string): void {
  const section = out.split(`ping ${pair} `)[1];
  expect(section).toBeDefined();
  const lines = section!.split("\n").slice(1, 4);
  expect(lines.map((l) => /^\s*(\d+) bytes: (\d+)\/(\d+) replies, 0% loss, rtt /.exec(l)?.slice(1, 4))).toEqual([
    ["56", "3", "3"],
    ["1000", "3", "3"],
    ["1472", "3", "3"],
  ]);
}

async function runOnce(args: string[]) {
  const p = Bun.spawn([process.execPath, DEMO, "--once", ...args], { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { out, err, code };
}

test("demo --once: qnicd carries alice <-> bob pings of every size without loss, prints the /vifs URL, leaves nothing behind", async () => {
  const { out, err, code } = await runOnce([]);
  // stderr carries the demo's diagnostics on a failure; show it first.
  expect({ code, err }).toEqual({ code: 0, err: "" });
  expectPingsAnswered(out, "alice -> bob");
  expectPingsAnswered(out, "bob -> alice");
  if (out.includes("network: TAPs on a private Linux bridge")) expectPingsAnswered(out, "alice -> the host");
  else expect(out).toContain("network: qnicd's in-daemon switch (--peer switch), because ");
  expect(out).toMatch(/all \d+ pings answered, none lost\n/);
  expect(out).toMatch(/\nstatus API: curl 127\.0\.0\.1:\d+\/vifs /);
  expect(out).toContain("cleaned up: qnicd stopped, destroyed alice, bob");
  expectNothingLeft(out);
}, 60_000);

test("demo --once --peer switch: the same pings through qnicd's in-daemon switch", async () => {
  const { out, err, code } = await runOnce(["--peer", "switch"]);
  expect({ code, err }).toEqual({ code: 0, err: "" });
  expect(out).toContain("network: qnicd's in-daemon switch (--peer switch), because asked for with --peer switch\n");
  expect(out).toContain("--peer switch --vifname-prefix");
  expectPingsAnswered(out, "alice -> bob");
  expectPingsAnswered(out, "bob -> alice");
  expect(out).toMatch(/\nstatus API: curl 127\.0\.0\.1:\d+\/vifs /);
  expectNothingLeft(out);
}, 60_000);

test("Ctrl-C (delivered twice, as through npm) while the demo waits stops it cleanly (exit 0) and leaves nothing behind", async () => {
  const p = Bun.spawn([process.execPath, DEMO], { stdout: "pipe", stderr: "pipe" });
  const errText = new Response(p.stderr).text();
  let out = "";
  const dec = new TextDecoder();
  const reader = p.stdout.getReader();
  // Read until the demo says it waits, then interrupt it; a demo that dies first ends the loop.
  while (!out.includes("up until Ctrl-C")) {
    const { value, done } = await reader.read();
    if (done) break;
    out += dec.decode(value, { stream: true });
  }
  expect(out).toContain("up until Ctrl-C");
  const url = /status API: curl (\S+)\/vifs/.exec(out)![1]!;
  const vifs = (await (await fetch(`http://${url}/vifs`)).json()) as { vifs: { name: string; backendState: { name: string } }[] };
  expect(vifs.vifs.map((v) => v.backendState.name)).toEqual(["Connected", "Connected"]);
  // Through `npm run demo` a terminal's Ctrl-C reaches the demo twice at once (its process group,
  // and scripts/bun.mjs forwarding it): that is still one orderly stop, not "kill everything now".
  p.kill("SIGINT");
  await Bun.sleep(50); // two deliveries, not one pending signal the kernel would merge
  p.kill("SIGINT");
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    out += dec.decode(value, { stream: true });
  }
  const code = await p.exited;
  expect({ code, err: await errText }).toEqual({ code: 0, err: "\nSIGINT: stopping the demo\n" });
  expectNothingLeft(out);
  expect(fetch(`http://${url}/health`)).rejects.toThrow();
}, 60_000);

test("a bad option is one line on stderr and exit status 2, before anything starts", async () => {
  const p = Bun.spawn([process.execPath, DEMO, "--peer", "wifi"], { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  expect({ code, out, err }).toEqual({ code: 2, out: "", err: 'demo: --peer: expected auto, tap or switch, got "wifi"\n' });
});
