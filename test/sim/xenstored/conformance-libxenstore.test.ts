// Conformance against Debian's libxenstore4 through a small C program (fixtures/xsprobe.c)
// compiled here with gcc against libxen-dev's xenstore.h. libxenstore sends req_id 0, keeps one
// socket per handle, reads watch events on a separate thread, and falls back to DIRECTORY_PART
// when DIRECTORY answers E2BIG.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { simPaths } from "../../../src/sim/paths.ts";
import { ensureDebPackages } from "../../support/apt.ts";
import { RawClient, startTestHost, XsOp, type TestHost } from "./helpers.ts";

let host: TestHost;
let raw: RawClient;
let buildDir: string;
let probe: string;
let passed = 0;

beforeAll(async () => {
  ensureDebPackages(["libxenstore4", "libxen-dev"]);
  buildDir = mkdtempSync(join(tmpdir(), "qnicd-xsprobe-"));
  probe = join(buildDir, "xsprobe");
  const src = resolve(import.meta.dir, "fixtures/xsprobe.c");
  const cc = Bun.spawnSync(["gcc", "-Wall", "-Werror", "-O1", "-o", probe, src, "-lxenstore"], { stderr: "pipe" });
  if (cc.exitCode !== 0) throw new Error(`gcc failed:\n${cc.stderr.toString()}`);
  host = await startTestHost();
  raw = await host.dom0();
});
afterAll(async () => {
  await host.cleanup();
  rmSync(buildDir, { recursive: true, force: true });
  console.log(`conformance: libxenstore ${passed} cases`);
});

/** Run a probe scenario (async: the daemon runs in this process); returns its key=value lines. */
async function run(args: string[], socket = host.xs.socketPath): Promise<string[]> {
  const p = Bun.spawn([probe, ...args], { env: { ...process.env, XENSTORED_PATH: socket }, stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => p.kill(), 10000);
  const [code, out, err] = await Promise.all([p.exited, new Response(p.stdout).text(), new Response(p.stderr).text()]);
  clearTimeout(timer);
  if (code !== 0) throw new Error(`xsprobe ${args.join(" ")} exited ${code}:\n${out}${err}`);
  return out.trimEnd().split("\n");
}

function cas(name: string, fn: () => Promise<void>) {
  test(name, async () => {
    await fn();
    passed++;
  });
}

describe("libxenstore", () => {
  cas("xs_write / xs_read: binary value with NUL and 0xff round-trips; missing node is ENOENT", async () => {
    expect(await run(["write-read"])).toEqual([
      "write=1",
      "value_len=4",
      "value_hex=610062ff",
      "terminated=1",
      "missing=null errno=ENOENT",
    ]);
  });

  cas("xs_directory lists children in order", async () => {
    await raw.write("/c/dir/one", "");
    await raw.write("/c/dir/two", "");
    expect(await run(["directory", "/c/dir"])).toEqual(["num=2", "child=one", "child=two"]);
    expect(await run(["directory", "/c/nodir"])).toEqual(["num=0", "errno=ENOENT"]);
  });

  cas("xs_directory of a list bigger than one payload (DIRECTORY_PART pages)", async () => {
    const names = Array.from({ length: 300 }, (_, i) => `entry-number-${String(i).padStart(4, "0")}-padding`);
    for (const n of names) raw.send(XsOp.MKDIR, `/c/bigdir/${n}\0`);
    await raw.settle();
    expect(await raw.err(XsOp.DIRECTORY, "/c/bigdir\0")).toBe("E2BIG");
    const out = await run(["directory", "/c/bigdir"]);
    expect(out[0]).toBe("num=300");
    expect(out.slice(1)).toEqual(names.map((n) => `child=${n}`));
  });

  cas("xs_mkdir / xs_rm; removing below a missing parent fails with ENOENT", async () => {
    expect(await run(["mkdir-rm"])).toEqual([
      "mkdir=1",
      "exists_len=0",
      "rm=1",
      "after=null errno=ENOENT",
      "rm_missing_parent=0 errno=ENOENT",
    ]);
  });

  cas("xs_set_permissions / xs_get_permissions", async () => {
    expect(await run(["perms"])).toEqual(["set=1", "num=3", "perm=0:0", "perm=5:1", "perm=6:3"]);
    expect(await raw.getPerms("/c/perm")).toEqual(["n0", "r5", "b6"]);
  });

  cas("xs_transaction_start/end: isolated until commit", async () => {
    expect(await run(["tx-commit"])).toEqual([
      "started=1",
      "outside_before=null",
      "inside=1",
      "commit=1",
      "outside_after=2",
    ]);
  });

  cas("xs_transaction_end after a conflicting write: false with errno EAGAIN, nothing applied", async () => {
    expect(await run(["tx-conflict"])).toEqual(["commit=0 errno=EAGAIN", "y=null"]);
  });

  cas("xs_transaction_end with abort discards", async () => {
    expect(await run(["tx-abort"])).toEqual(["abort=1", "after=null"]);
  });

  cas("xs_watch + xs_read_watch: registration event, change below, removal; xs_unwatch", async () => {
    expect(await run(["watch"])).toEqual([
      "watch=1",
      "event=/c/w tok",
      "event=/c/w/child tok",
      "event=/c/w tok",
      "unwatch=1",
      "unwatch_again=0 errno=ENOENT(2)",
    ]);
  });

  cas("xs_get_domain_path, xs_introduce_domain, xs_is_domain_introduced, xs_release_domain", async () => {
    expect(await run(["domains"])).toEqual([
      "path=/local/domain/9",
      "before=0",
      "introduce=1",
      "during=1",
      "release=1",
      "after=0",
    ]);
  });

  cas("as a guest over its socket: relative paths in its home, dom0's nodes EACCES", async () => {
    await raw.mkdir("/local/domain/13");
    await raw.setPerms("/local/domain/13", ["n13"]);
    await raw.call(XsOp.INTRODUCE, "13\0" + "1\0" + "2\0");
    expect(await run(["guest", "13"], simPaths(host.dir).domainSocket(13))).toEqual([
      "write=1",
      "read=42",
      "tool=null errno=EACCES",
      "home=/local/domain/13",
    ]);
    expect(await raw.getPerms("/local/domain/13/data/x")).toEqual(["n13"]);
  });

  cas("xs_control_command: print answers OK, unknown commands EINVAL", async () => {
    expect(await run(["control"])).toEqual(["print=OK", "unknown=null errno=EINVAL"]);
    expect(host.logs).toContain("control: hello-from-c");
  });
});
