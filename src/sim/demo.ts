// `npm run demo`: a simulated Xen host in a temp dir, two guests with one vif each, the xenstore
// tree they produce, then everything torn down. There is no backend yet, so the guests are created
// without waiting for one (libxl would give up after 10 s); their vifs stay in Initialising.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { XenstoreClient } from "../xenstore/index.ts";
import { startHost, stopHost } from "./toolstack/host.ts";
import { simHypervisor } from "./toolstack/hypervisor.ts";
import { libxlLogTo } from "./toolstack/libxl-log.ts";
import { Toolstack } from "./toolstack/toolstack.ts";
import { xenstoreLs } from "./toolstack/xenstore-ls.ts";

const say = (s = "") => process.stdout.write(`${s}\n`);
const dir = join(mkdtempSync(join(tmpdir(), "qnicd-demo-")), "host");
let xs: XenstoreClient | undefined;
let interrupted = false;
/** startHost in progress: cleanup waits for it, or a daemon spawned meanwhile would outlive us. */
let starting: Promise<unknown> | undefined;

let cleaning: Promise<void> | undefined;
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    await starting?.catch(() => {});
    xs?.close();
    const r = await stopHost(dir, { log: libxlLogTo((l) => process.stderr.write(`${l}\n`)) });
    for (const w of r.warnings) process.stderr.write(`demo: ${w}\n`);
    rmSync(join(dir, ".."), { recursive: true, force: true });
    say(`host stopped${r.destroyed.length ? ` (destroyed ${r.destroyed.join(", ")})` : ""}; ${join(dir, "..")} removed`);
  })();
  return cleaning;
}
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    interrupted = true;
    process.stderr.write(`\n${sig}: cleaning up\n`);
    void cleanup().finally(() => process.exit(130));
  });
}

try {
  const host = await (starting = startHost(dir));
  say(`simulated Xen host up in ${host.dir} (xenstored pid ${host.pid})`);
  say(`  export XENSTORED_PATH=${host.socketPath}`);
  xs = await XenstoreClient.connect({ path: host.socketPath, reconnect: { enabled: false } });
  // After Ctrl-C the cleanup closes this client under an in-flight create: its complaints are noise.
  const log = libxlLogTo((l) => interrupted || process.stderr.write(`${l}\n`));
  const ts = new Toolstack({ xs, hv: simHypervisor(dir), log });

  say();
  say("no backend is running yet, so the guests are created without waiting for one:");
  for (const name of ["alice", "bob"]) {
    const d = await ts.create(name, { vifs: 1, noWait: true });
    say(`  xl create ${name} --vifs 1 --no-wait  ->  domain ${d.domid}, vif${d.domid}.0 mac ${d.nics[0]!.mac} (backend state 1, Initialising)`);
  }

  say();
  // What a network backend works with: names, and the vif nodes on both sides. The rest (control/,
  // memory/, /vm, /libxl) is written too; `xenstore-ls -f` against XENSTORED_PATH shows it all.
  say("xenstore-ls -f, the networking part:");
  const relevant = /^\/local\/domain\/\d+\/(name|domid|device\/vif\/|backend\/)/;
  for (const line of await xenstoreLs(xs, "/local/domain", { compact: true })) if (relevant.test(line)) say(`  ${line}`);
  say();
} catch (e) {
  if (!interrupted) {
    process.stderr.write(`demo failed: ${(e as Error).message}\n`);
    process.exitCode = 1;
  }
} finally {
  await cleanup();
}
