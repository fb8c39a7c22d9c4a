// `npm run build [-- --out FILE]`: qnicd as one executable (default dist/qnicd) for a Xen host with no
// Node, no gcc and no checkout. The daemon, its worker thread's entry (a second entrypoint: a
// compiled binary can only start Workers it carries) and native/build/lib*.so (built here, with gcc,
// never on the host; src/native/embedded.ts loads them) all go inside.
import { mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
// @ts-ignore: plain ESM shared with npm's postinstall
import { buildNative } from "../native/build.mjs";

const root = resolve(import.meta.dir, "..");

function outFile(argv: string[]): string {
  const i = argv.indexOf("--out");
  if (i === -1) return join(root, "dist", "qnicd");
  const v = argv[i + 1];
  if (!v || v.startsWith("--")) {
    console.error("qnicd build: --out needs a file path, e.g. --out /tmp/qnicd");
    process.exit(2);
  }
  // npm runs scripts from the package root; INIT_CWD is where `npm run build -- --out x` was typed.
  return resolve(process.env.INIT_CWD ?? process.cwd(), v);
}

const out = outFile(process.argv.slice(2));
buildNative({ quiet: true });
const sources = readdirSync(join(root, "native")).filter((f) => f.endsWith(".c"));
const libs = sources.map((c) => join(root, "native", "build", `lib${c.slice(0, -2)}.so`));

mkdirSync(dirname(out), { recursive: true });
// Bun writes the source maps beside the binary although it embeds them too (stack traces name the
// sources without them): build in a scratch directory and move only the binary, which also
// replaces an installed one atomically (a running qnicd keeps its old file).
const staging = mkdtempSync(join(dirname(out), ".qnicd-build-"));
const staged = join(staging, "qnicd");
try {
  await Bun.build({
    entrypoints: [join(root, "src", "main.ts"), join(root, "workers", "vif-worker.ts")],
    // Entry names inside the binary are relative to root: src/pool/pool-worker.ts starts
    // workers/vif-worker.ts by that name.
    root,
    target: "bun",
    // Precompiled JavaScriptCore bytecode: about a quarter less start-up time for 2.6 MB more
    // (measured on the sim); it matches the Bun runtime embedded with it by construction.
    bytecode: true,
    format: "esm",
    sourcemap: "inline",
    compile: {
      outfile: staged,
      assets: libs,
      // A daemon started from any directory must not pick up that directory's .env or bunfig.toml.
      autoloadDotenv: false,
      autoloadBunfig: false,
    },
  });
  renameSync(staged, out);
} catch (e) {
  const logs = (e as { errors?: unknown[] }).errors ?? [e];
  for (const log of logs) console.error(String(log));
  console.error("qnicd build: bun build --compile failed (see above)");
  process.exitCode = 1;
} finally {
  rmSync(staging, { recursive: true, force: true });
}
if (process.exitCode !== 1) {
  const mb = (statSync(out).size / 2 ** 20).toFixed(1);
  console.log(`qnicd: built ${out} (${mb} MiB, ${libs.length} native libraries inside)`);
}
