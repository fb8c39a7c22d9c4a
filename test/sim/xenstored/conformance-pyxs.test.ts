// Conformance against Debian's python3-pyxs: one connection per client, incrementing req_ids,
// replies matched by req_id and checked for the echoed tx_id, watches routed by token.
// Scripts run under Debian's own /usr/bin/python3 (python3 on PATH may be a pyenv build
// without Debian's dist-packages).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { simPaths } from "../../../src/sim/paths.ts";
import { ensureDebPackages } from "../../support/apt.ts";
import { RawClient, startTestHost, XsOp, type TestHost } from "./helpers.ts";

let host: TestHost;
let raw: RawClient;
let passed = 0;

const PRELUDE = `
import errno, json, os, sys
from pyxs import Client, PyXSError
def connect(sock=None):
    c = Client(unix_socket_path=sock or os.environ["XS"])
    c.connect()
    return c
def err_name(f):
    try:
        f()
        return None
    except PyXSError as e:
        return errno.errorcode.get(e.args[0], str(e.args[0]))
def out(x):
    print(json.dumps(x, default=lambda b: b.decode("latin1")))
c = connect()
`;

beforeAll(async () => {
  ensureDebPackages(["python3-pyxs"]);
  host = await startTestHost();
  raw = await host.dom0();
});
afterAll(async () => {
  await host.cleanup();
  console.log(`conformance: pyxs ${passed} cases`);
});

/** Run a pyxs script (async: the daemon lives in this process); returns its last JSON line. */
async function py(code: string, env: Record<string, string> = {}): Promise<any> {
  const p = Bun.spawn(["/usr/bin/python3", "-c", PRELUDE + code], {
    env: { ...process.env, XS: host.xs.socketPath, ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [rc, out, err] = await Promise.all([p.exited, new Response(p.stdout).text(), new Response(p.stderr).text()]);
  if (rc !== 0) throw new Error(`python exited ${rc}:\n${err}`);
  const lines = out.trim().split("\n");
  return JSON.parse(lines[lines.length - 1]!);
}

function cas(name: string, fn: () => Promise<void>) {
  test(name, async () => {
    await fn();
    passed++;
  });
}

describe("pyxs", () => {
  cas("write, read, mkdir, list, exists, delete on one connection", async () => {
    const r = await py(`
c.write(b"/py/a/b", b"hello")
c.mkdir(b"/py/dir/sub")
res = {
  "read": c.read(b"/py/a/b"),
  "parent": c.read(b"/py/a"),
  "list": c.list(b"/py"),
  "exists": c.exists(b"/py/dir/sub"),
  "missing": c.exists(b"/py/nope"),
}
c.delete(b"/py/a")
res["after"] = c.list(b"/py")
out(res)`);
    expect(r).toEqual({ read: "hello", parent: "", list: ["a", "dir"], exists: true, missing: false, after: ["dir"] });
    expect(await raw.read("/py/dir/sub")).toBe("");
  });

  cas("error replies map to errno: ENOENT, EINVAL, EACCES-free dom0, read default", async () => {
    const r = await py(`
out({
  "enoent": err_name(lambda: c.read(b"/py-missing")),
  "default": c.read(b"/py-missing", b"dflt"),
  "rm_noparent": err_name(lambda: c.delete(b"/py-missing/child")),
  "einval": err_name(lambda: c.set_perms(b"/py-missing", [b"r0"])),
})`);
    expect(r).toEqual({ enoent: "ENOENT", default: "dflt", rm_noparent: "ENOENT", einval: "ENOENT" });
  });

  cas("get_perms / set_perms round-trip", async () => {
    const r = await py(`
c.write(b"/py/perm", b"v")
c.set_perms(b"/py/perm", [b"b0", b"r3", b"w4"])
out(c.get_perms(b"/py/perm"))`);
    expect(r).toEqual(["b0", "r3", "w4"]);
    expect(await raw.getPerms("/py/perm")).toEqual(["b0", "r3", "w4"]);
  });

  cas("many requests on one connection: incrementing req_ids all matched", async () => {
    const r = await py(`
for i in range(200):
    c.write(b"/py/many/%d" % i, b"%d" % i)
out(sorted(int(x) for x in c.list(b"/py/many")) == list(range(200)) and c.read(b"/py/many/199"))`);
    expect(r).toBe("199");
  });

  cas("transaction: invisible to another client until commit, then visible", async () => {
    const r = await py(`
other = connect()
c.transaction()
c.write(b"/py/tx/a", b"1")
before = other.exists(b"/py/tx/a")
inside = c.read(b"/py/tx/a")
ok = c.commit()
out({"before": before, "inside": inside, "ok": ok, "after": other.read(b"/py/tx/a")})`);
    expect(r).toEqual({ before: false, inside: "1", ok: true, after: "1" });
  });

  cas("transaction: a conflicting write makes commit return False (EAGAIN), nothing applied", async () => {
    const r = await py(`
c.write(b"/py/cf/x", b"0")
other = connect()
c.transaction()
c.read(b"/py/cf/x")
c.write(b"/py/cf/y", b"mine")
other.write(b"/py/cf/x", b"theirs")
ok = c.commit()
out({"ok": ok, "y": other.exists(b"/py/cf/y"), "x": other.read(b"/py/cf/x")})`);
    expect(r).toEqual({ ok: false, y: false, x: "theirs" });
  });

  cas("transaction: rollback discards", async () => {
    const r = await py(`
c.transaction()
c.write(b"/py/rb", b"x")
c.rollback()
out(c.exists(b"/py/rb"))`);
    expect(r).toBe(false);
  });

  cas("monitor: watch fires on registration, then for changes below the path", async () => {
    const r = await py(`
other = connect()
m = c.monitor()
m.watch(b"/py/w", b"tok")
events = m.wait()
first = next(events)
other.write(b"/py/w/child", b"1")
second = next(events)
other.delete(b"/py/w")
third = next(events)
m.unwatch(b"/py/w", b"tok")
out([list(first), list(second), list(third)])`);
    expect(r).toEqual([
      ["/py/w", "tok"],
      ["/py/w/child", "tok"],
      ["/py/w", "tok"],
    ]);
  });

  cas("monitor: transactional writes fire only on commit", async () => {
    const r = await py(`
import threading
other = connect()
m = c.monitor()
m.watch(b"/py/tw", b"t")
events = m.wait()
next(events)
other.transaction()
other.write(b"/py/tw/a", b"1")
got = []
def reader():
    got.append(next(events))
th = threading.Thread(target=reader, daemon=True)
th.start()
th.join(0.3)
before_commit = list(got)
other.commit()
th.join(5)
out({"before": before_commit, "after": [list(e) for e in got]})`);
    expect(r).toEqual({ before: [], after: [["/py/tw/a", "t"]] });
  });

  cas("domain ops: get_domain_path, introduce, is_domain_introduced, release", async () => {
    const r = await py(`
res = {"path": c.get_domain_path(7), "before": c.is_domain_introduced(7)}
c.introduce_domain(7, 4242, 9)
res["during"] = c.is_domain_introduced(7)
res["sock"] = os.path.exists(os.environ["GUEST7"])
# pyxs refuses RELEASE client-side unless /proc/xen/capabilities says control_d, which only a
# real dom0 has; the request itself is what is under test.
c.SU = True
c.release_domain(7)
res["sock_after"] = os.path.exists(os.environ["GUEST7"])
res["after"] = c.is_domain_introduced(7)
out(res)`, { GUEST7: simPaths(host.dir).domainSocket(7) });
    expect(r).toEqual({
      path: "/local/domain/7",
      before: false,
      during: true,
      sock: true,
      sock_after: false,
      after: false,
    });
  });

  cas("as a guest over its socket: own home writable, dom0 nodes EACCES, privileged ops EACCES", async () => {
    await raw.mkdir("/local/domain/11");
    await raw.setPerms("/local/domain/11", ["n11"]);
    await raw.call(XsOp.INTRODUCE, "11\0" + "1\0" + "2\0");
    const r = await py(
      `
g = connect(os.environ["GUEST"])
g.write(b"/local/domain/11/data", b"x")
out({
  "read": g.read(b"/local/domain/11/data"),
  "tool": err_name(lambda: g.read(b"/tool")),
  "intro": err_name(lambda: g.is_domain_introduced(11)),
  "perms": g.get_perms(b"/local/domain/11/data"),
})`,
      { GUEST: simPaths(host.dir).domainSocket(11) },
    );
    expect(r).toEqual({ read: "x", tool: "EACCES", intro: "EACCES", perms: ["n11"] });
  });

  cas("walk visits the tree through list and read", async () => {
    await raw.write("/py/walk/a/b", "1");
    await raw.write("/py/walk/c", "2");
    const r = await py(`out([[p, v, ch] for p, v, ch in c.walk(b"/py/walk")])`);
    expect(r).toEqual([
      ["/py/walk", "", ["a", "c"]],
      ["/py/walk/a", "", ["b"]],
      ["/py/walk/a/b", "1", []],
      ["/py/walk/c", "2", []],
    ]);
  });
});
