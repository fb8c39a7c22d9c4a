// Conformance against Debian's xenstore-utils (xenstore-read/-write/-ls/-list/-exists/-rm/-chmod/
// -watch, linked against the real libxenstore), pointed at the simulated daemon via XENSTORED_PATH.
// Pointing them at a guest socket makes them that guest, which exercises permissions end to end.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { simPaths } from "../../../src/sim/paths.ts";
import { ensureDebPackages } from "../../support/apt.ts";
import { RawClient, startTestHost, XsOp, type TestHost } from "./helpers.ts";

let host: TestHost;
let raw: RawClient;
let passed = 0;

beforeAll(async () => {
  ensureDebPackages(["xenstore-utils", "libxenstore4"]);
  host = await startTestHost();
  raw = await host.dom0();
  await raw.mkdir("/local/domain/5");
  await raw.setPerms("/local/domain/5", ["n5"]);
  await raw.call(XsOp.INTRODUCE, "5\0" + "1\0" + "2\0");
});
afterAll(async () => {
  await host.cleanup();
  console.log(`conformance: xenstore-utils ${passed} cases`);
});

interface Run {
  code: number;
  out: string;
  err: string;
}

/** Run a CLI as dom0 (or as `guest` through its socket). Async: the daemon runs in this process. */
async function xs(tool: string, args: string[], guest?: number): Promise<Run> {
  const socket = guest === undefined ? host.xs.socketPath : simPaths(host.dir).domainSocket(guest);
  const p = Bun.spawn([`/usr/bin/${tool}`, ...args], {
    env: { ...process.env, XENSTORED_PATH: socket },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [code, out, err] = await Promise.all([p.exited, new Response(p.stdout).text(), new Response(p.stderr).text()]);
  return { code, out, err };
}

/** A conformance case: counted only when it passes. */
function cas(name: string, fn: () => Promise<void>) {
  test(name, async () => {
    await fn();
    passed++;
  });
}

describe("xenstore-utils", () => {
  cas("xenstore-write creates nodes and missing parents; exit 0, silent", async () => {
    expect(await xs("xenstore-write", ["/u/w/deep/key", "value one"])).toEqual({ code: 0, out: "", err: "" });
    expect(await raw.read("/u/w/deep/key")).toBe("value one");
    expect(await raw.read("/u/w/deep")).toBe("");
  });

  cas("xenstore-write with several key/value pairs writes them all", async () => {
    expect((await xs("xenstore-write", ["/u/m/a", "1", "/u/m/b", "2", "/u/m/c", "3"])).code).toBe(0);
    expect(await raw.ls("/u/m")).toEqual(["a", "b", "c"]);
    expect(await raw.read("/u/m/c")).toBe("3");
  });

  cas("xenstore-write with a missing value prints usage and exits 1", async () => {
    const r = await xs("xenstore-write", ["/u/odd"]);
    expect(r.code).toBe(1);
    expect(r.err).toContain("Usage");
  });

  cas("xenstore-write expands escapes; xenstore-read -R returns the raw bytes", async () => {
    expect((await xs("xenstore-write", ["/u/esc", "a\\x01b"])).code).toBe(0);
    expect((await raw.call(XsOp.READ, "/u/esc\0")).payload).toEqual(Buffer.from([0x61, 1, 0x62]));
    const r = await xs("xenstore-read", ["-R", "/u/esc"]);
    expect(Buffer.from(r.out, "latin1")).toEqual(Buffer.from([0x61, 1, 0x62]));
    expect((await xs("xenstore-read", ["/u/esc"])).out).toBe("a\\001b\n");
  });

  cas("xenstore-read prints values one per line", async () => {
    await raw.write("/u/r/a", "alpha");
    await raw.write("/u/r/b", "beta gamma");
    expect(await xs("xenstore-read", ["/u/r/a", "/u/r/b"])).toEqual({ code: 0, out: "alpha\nbeta gamma\n", err: "" });
  });

  cas("xenstore-read -p prefixes the path", async () => {
    await raw.write("/u/rp", "v");
    expect((await xs("xenstore-read", ["-p", "/u/rp"])).out).toBe("/u/rp: v\n");
  });

  cas("xenstore-read of a missing node reports it and exits 1", async () => {
    const r = await xs("xenstore-read", ["/u/missing"]);
    expect(r.code).toBe(1);
    expect(r.out).toBe("");
    expect(r.err).toContain("couldn't read path /u/missing");
  });

  cas("xenstore-read of an empty value prints an empty line", async () => {
    await raw.write("/u/empty", "");
    expect(await xs("xenstore-read", ["/u/empty"])).toEqual({ code: 0, out: "\n", err: "" });
  });

  cas("xenstore-ls prints the subtree indented, with quoted values", async () => {
    await raw.write("/u/ls/a", "1");
    await raw.write("/u/ls/b/c", "two");
    expect((await xs("xenstore-ls", ["/u/ls"])).out).toBe('a = "1"\nb = ""\n c = "two"\n');
  });

  cas("xenstore-ls -f prints full paths", async () => {
    expect((await xs("xenstore-ls", ["-f", "/u/ls"])).out).toBe(
      '/u/ls/a = "1"\n/u/ls/b = ""\n/u/ls/b/c = "two"\n',
    );
  });

  cas("xenstore-ls -p shows permissions as set over the wire", async () => {
    await raw.setPerms("/u/ls/a", ["n0", "r5", "b7"]);
    const lines = (await xs("xenstore-ls", ["-p", "/u/ls"])).out.split("\n");
    expect(lines[0]).toMatch(/^a = "1" .*\(n0,r5,b7\)$/);
    expect(lines[1]).toMatch(/^b = "" .*\(n0\)$/);
  });

  cas("xenstore-ls of the whole store starts with xenstored's own nodes", async () => {
    const out = (await xs("xenstore-ls", [])).out;
    expect(out.startsWith('tool = ""\n xenstored = ""\nlocal = ""\n domain = ""\n')).toBe(true);
    expect(out).toContain('name = "Domain-0"');
  });

  cas("xenstore-list prints child names; -p full paths", async () => {
    expect((await xs("xenstore-list", ["/u/ls"])).out).toBe("a\nb\n");
    expect((await xs("xenstore-list", ["-p", "/u/ls"])).out).toBe("/u/ls/a\n/u/ls/b\n");
  });

  cas("xenstore-list of a directory bigger than one payload works (DIRECTORY_PART fallback)", async () => {
    const names = Array.from({ length: 150 }, (_, i) => `child-with-a-rather-long-name-${String(i).padStart(3, "0")}`);
    for (const n of names) raw.send(XsOp.MKDIR, `/u/big/${n}\0`);
    await raw.settle();
    expect(await raw.err(XsOp.DIRECTORY, "/u/big\0")).toBe("E2BIG");
    const r = await xs("xenstore-list", ["/u/big"]);
    expect(r.code).toBe(0);
    expect(r.out.trimEnd().split("\n")).toEqual(names);
  });

  cas("xenstore-exists exits 0 for a node and 1 for a missing one", async () => {
    expect((await xs("xenstore-exists", ["/u/ls/a"])).code).toBe(0);
    expect((await xs("xenstore-exists", ["/u/ls/nope"])).code).toBe(1);
  });

  cas("xenstore-rm removes a subtree", async () => {
    await raw.write("/u/rm/x/y", "1");
    expect((await xs("xenstore-rm", ["/u/rm/x"])).code).toBe(0);
    expect(await raw.ls("/u/rm")).toEqual([]);
  });

  cas("xenstore-rm of a missing node is fine if its parent exists, else it fails", async () => {
    expect((await xs("xenstore-rm", ["/u/rm/none"])).code).toBe(0);
    const r = await xs("xenstore-rm", ["/u/rm/none/deeper"]);
    expect(r.code).toBe(1);
    expect(r.err).toContain("could not remove path /u/rm/none/deeper");
  });

  cas("xenstore-rm -t also removes parents left empty", async () => {
    await raw.write("/u/rt/keep", "k");
    await raw.write("/u/rt/a/b/c", "v");
    expect((await xs("xenstore-rm", ["-t", "/u/rt/a/b/c"])).code).toBe(0);
    expect(await raw.ls("/u/rt")).toEqual(["keep"]);
  });

  cas("xenstore-chmod sets permissions; -r applies them to the subtree", async () => {
    await raw.write("/u/ch/x/y", "v");
    expect((await xs("xenstore-chmod", ["/u/ch", "b0", "r3"])).code).toBe(0);
    expect(await raw.getPerms("/u/ch")).toEqual(["b0", "r3"]);
    expect(await raw.getPerms("/u/ch/x")).toEqual(["n0"]);
    expect((await xs("xenstore-chmod", ["-r", "/u/ch", "n0", "r4"])).code).toBe(0);
    for (const p of ["/u/ch", "/u/ch/x", "/u/ch/x/y"]) expect(await raw.getPerms(p)).toEqual(["n0", "r4"]);
  });

  cas("xenstore-watch -n prints the registration event, then changed paths, and exits", async () => {
    const p = Bun.spawn(["/usr/bin/xenstore-watch", "-n", "3", "/u/watch"], {
      env: { ...process.env, XENSTORED_PATH: host.xs.socketPath },
      stdout: "pipe",
      stderr: "pipe",
    });
    const reader = p.stdout.getReader();
    let out = "";
    const readUntil = async (lines: number) => {
      while (out.split("\n").length <= lines) {
        const { value, done } = await reader.read();
        if (done) break;
        out += new TextDecoder().decode(value);
      }
    };
    await readUntil(1);
    expect(out).toBe("/u/watch\n");
    await raw.write("/u/watch/child", "1");
    await raw.write("/u/elsewhere", "1");
    await raw.rm("/u/watch");
    expect(await p.exited).toBe(0);
    await readUntil(3);
    expect(out).toBe("/u/watch\n/u/watch/child\n/u/watch\n");
  });

  cas("as a guest (its socket): relative paths land in its home and it owns what it writes", async () => {
    expect((await xs("xenstore-write", ["device/vif/0/state", "4"], 5)).code).toBe(0);
    expect(await raw.read("/local/domain/5/device/vif/0/state")).toBe("4");
    expect(await raw.getPerms("/local/domain/5/device/vif/0/state")).toEqual(["n5"]);
    expect((await xs("xenstore-read", ["device/vif/0/state"], 5)).out).toBe("4\n");
  });

  cas("as a guest: reading or writing dom0's nodes is refused and exits 1", async () => {
    const r = await xs("xenstore-read", ["/tool/xenstored"], 5);
    expect(r.code).toBe(1);
    expect(r.err).toContain("couldn't read path /tool/xenstored");
    expect((await xs("xenstore-write", ["/tool/evil", "x"], 5)).code).toBe(1);
    expect(await raw.err(XsOp.READ, "/tool/evil\0")).toBe("ENOENT");
    expect((await xs("xenstore-exists", ["/tool"], 5)).code).toBe(1);
  });

  cas("as a guest: xenstore-chmod may not hand a node to another domain", async () => {
    await xs("xenstore-write", ["mine", "v"], 5);
    expect((await xs("xenstore-chmod", ["mine", "n5", "r0"], 5)).code).toBe(0);
    expect((await xs("xenstore-chmod", ["mine", "n6"], 5)).code).toBe(1);
    expect(await raw.getPerms("/local/domain/5/mine")).toEqual(["n5", "r0"]);
  });
});
