// The node tree as dom0 sees it: initial structure, implicit parents, removal, listing, paths.
import { afterEach, beforeEach, expect, test } from "bun:test";
import { startTestHost, strings, text, XsOp, type RawClient, type TestHost } from "./helpers.ts";

let host: TestHost;
let c: RawClient;
beforeEach(async () => {
  host = await startTestHost();
  c = await host.dom0();
});
afterEach(async () => {
  await host.cleanup();
});

test("a fresh daemon has cxenstored's nodes plus dom0's home, all owned by dom0 with no access for others", async () => {
  expect(await c.ls("/")).toEqual(["tool", "local"]);
  expect(await c.ls("/tool")).toEqual(["xenstored"]);
  expect(await c.ls("/local/domain")).toEqual(["0"]);
  expect(await c.read("/local/domain/0/name")).toBe("Domain-0");
  expect(await c.read("/local/domain/0/domid")).toBe("0");
  expect(await c.getPerms("/")).toEqual(["n0"]);
  expect(await c.getPerms("@releaseDomain")).toEqual(["n0"]);
  expect(await c.getPerms("@introduceDomain")).toEqual(["n0"]);
  expect(await c.err(XsOp.GET_PERMS, "@other\0")).toBe("ENOENT");
});

test("WRITE creates missing parents with empty values and inherited permissions", async () => {
  await c.mkdir("/p");
  await c.setPerms("/p", ["r0", "b3"]);
  await c.write("/p/a/b/c", "leaf");
  expect(await c.read("/p/a")).toBe("");
  expect(await c.read("/p/a/b")).toBe("");
  expect(await c.read("/p/a/b/c")).toBe("leaf");
  for (const p of ["/p/a", "/p/a/b", "/p/a/b/c"]) expect(await c.getPerms(p)).toEqual(["r0", "b3"]);
});

test("WRITE replaces a value without touching children or permissions", async () => {
  await c.write("/w/child", "1");
  await c.setPerms("/w", ["n0", "r7"]);
  await c.write("/w", "v1");
  await c.write("/w", "v2");
  expect(await c.read("/w")).toBe("v2");
  expect(await c.ls("/w")).toEqual(["child"]);
  expect(await c.getPerms("/w")).toEqual(["n0", "r7"]);
});

test("MKDIR creates parents, and leaves an existing node's value alone", async () => {
  await c.mkdir("/m/a/b");
  expect(await c.ls("/m/a")).toEqual(["b"]);
  await c.write("/m/a", "keep");
  await c.mkdir("/m/a");
  expect(await c.read("/m/a")).toBe("keep");
});

test("RM removes the subtree; a missing node is fine if its parent exists, else ENOENT", async () => {
  await c.write("/r/a/b/c", "x");
  await c.write("/r/keep", "y");
  await c.rm("/r/a");
  expect(await c.ls("/r")).toEqual(["keep"]);
  expect(await c.err(XsOp.READ, "/r/a/b/c\0")).toBe("ENOENT");
  await c.rm("/r/missing");
  expect(await c.err(XsOp.RM, "/r/missing/deeper\0")).toBe("ENOENT");
  expect(await c.err(XsOp.RM, "/\0")).toBe("EINVAL");
});

test("DIRECTORY lists children in creation order; empty for a leaf", async () => {
  for (const n of ["zeta", "alpha", "mid"]) await c.write(`/d/${n}`, "");
  expect(await c.ls("/d")).toEqual(["zeta", "alpha", "mid"]);
  expect(await c.ls("/d/alpha")).toEqual([]);
  expect((await c.call(XsOp.DIRECTORY, "/d/alpha\0")).payload.length).toBe(0);
  expect(await c.err(XsOp.DIRECTORY, "/d/none\0")).toBe("ENOENT");
});

test("DIRECTORY answers E2BIG when the list exceeds a payload; DIRECTORY_PART pages through it", async () => {
  const names: string[] = [];
  for (let i = 0; i < 200; i++) names.push(`child-with-a-long-name-${String(i).padStart(4, "0")}`);
  const frames = names.map((n) => c.send(XsOp.MKDIR, `/big/${n}\0`));
  for (const id of frames) expect((await c.reply(id)).type).toBe(XsOp.MKDIR);
  expect(await c.err(XsOp.DIRECTORY, "/big\0")).toBe("E2BIG");

  const got: string[] = [];
  let offset = 0;
  let gen: string | undefined;
  let pages = 0;
  for (;;) {
    const m = await c.call(XsOp.DIRECTORY_PART, `/big\0${offset}\0`);
    expect(m.payload.length).toBeLessThanOrEqual(4096);
    const parts = text(m).split("\0");
    const g = parts.shift()!;
    gen ??= g;
    expect(g).toBe(gen); // unchanged node, same generation on every page
    pages++;
    const done = text(m).endsWith("\0\0");
    const page = parts.filter((p) => p !== "");
    got.push(...page);
    offset += page.reduce((n, p) => n + p.length + 1, 0);
    if (done) break;
  }
  expect(pages).toBeGreaterThan(1);
  expect(got).toEqual(names);
  // Past the end: generation and an empty string.
  const end = await c.call(XsOp.DIRECTORY_PART, `/big\0${offset + 10}\0`);
  expect(text(end)).toBe(`${gen}\0\0`);
  // The generation changes when the node changes.
  await c.mkdir("/big/one-more");
  const after = await c.call(XsOp.DIRECTORY_PART, "/big\0" + "0\0");
  expect(text(after).split("\0")[0]).not.toBe(gen);
  expect(await c.err(XsOp.DIRECTORY_PART, "/big\0")).toBe("EINVAL");
});

test("GET_PERMS and SET_PERMS round-trip every permission letter", async () => {
  await c.mkdir("/perm");
  await c.setPerms("/perm", ["b5", "r1", "w2", "n3", "b4"]);
  expect(await c.getPerms("/perm")).toEqual(["b5", "r1", "w2", "n3", "b4"]);
  expect(await c.err(XsOp.SET_PERMS, "/perm\0x1\0")).toBe("EINVAL");
  expect(await c.err(XsOp.SET_PERMS, "/perm\0r\0")).toBe("EINVAL");
  expect(await c.err(XsOp.SET_PERMS, "/perm\0")).toBe("EINVAL");
  expect(await c.err(XsOp.SET_PERMS, "/nope\0r0\0")).toBe("ENOENT");
  // Special nodes take permissions too (so guests can be allowed to watch them).
  await c.setPerms("@releaseDomain", ["n0", "r5"]);
  expect(await c.getPerms("@releaseDomain")).toEqual(["n0", "r5"]);
});

test("path validation: bad characters, //, trailing /, empty, @ outside watches", async () => {
  for (const p of ["/a b", "/a//b", "/a/", "", "/a\x01", "/a.b", "/é", "@foo"]) {
    expect(await c.err(XsOp.WRITE, `${p}\0v`)).toBe("EINVAL");
  }
  expect(await c.err(XsOp.READ, "@releaseDomain\0")).toBe("EINVAL");
  await c.write("/ok-_@chars/A9", "v");
  expect(await c.read("/ok-_@chars/A9")).toBe("v");
});

test("absolute paths longer than 3072 bytes are refused", async () => {
  const seg = "a".repeat(100);
  let p = "";
  while (p.length < 3100) p += `/${seg}`;
  expect(await c.err(XsOp.MKDIR, `${p}\0`)).toBe("EINVAL");
  expect(await c.err(XsOp.MKDIR, `${p.slice(0, 3072)}\0`)).toBe("");
});

test("relative paths from dom0 resolve under /local/domain/0", async () => {
  await c.write("rel/x", "1");
  expect(await c.read("/local/domain/0/rel/x")).toBe("1");
  expect(await c.read("rel/x")).toBe("1");
});

test("GET_DOMAIN_PATH answers /local/domain/<domid>", async () => {
  expect(strings(await c.call(XsOp.GET_DOMAIN_PATH, "7\0"))).toEqual(["/local/domain/7"]);
  expect(strings(await c.call(XsOp.GET_DOMAIN_PATH, "0\0"))).toEqual(["/local/domain/0"]);
});
