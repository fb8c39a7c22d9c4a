// --domid: 0 in dom0; in a driver domain (xenstore through /dev/xen/xenbus) the domain's own
// `domid` node, which also checks an explicit --domid. The sim needs no lookup: --domid picks the
// domain's socket.
import { expect, test } from "bun:test";
import { backendDomid, type DomidProbe } from "../../src/platform/backend-domid.ts";

function probe(paths: string[], node: string | undefined | Error): DomidProbe & { reads: string[] } {
  const reads: string[] = [];
  return {
    reads,
    exists: (p) => paths.includes(p),
    readOwnDomid: async (endpoint) => {
      reads.push(endpoint);
      if (node instanceof Error) throw node;
      return node;
    },
  };
}
const DOM0 = ["/dev/xen/xenbus", "/var/run/xenstored/socket"];
const DRIVER_DOMAIN = ["/dev/xen/xenbus"];

test("dom0 (xenstored's socket present): auto is 0 and nothing is read", async () => {
  const p = probe(DOM0, "7");
  expect(await backendDomid("auto", "xen", p)).toBe(0);
  expect(await backendDomid(3, "xen", p)).toBe(3);
  expect(p.reads).toEqual([]);
});

test("a driver domain: auto is the domain's own domid node, read through /dev/xen/xenbus", async () => {
  const p = probe(DRIVER_DOMAIN, "7");
  expect(await backendDomid("auto", "xen", p)).toBe(7);
  expect(p.reads).toEqual(["/dev/xen/xenbus"]);
  expect(await backendDomid(7, "xen", p)).toBe(7);
});

test("a driver domain given another --domid: one line saying which domain this is", async () => {
  await expect(backendDomid(3, "xen", probe(DRIVER_DOMAIN, "7"))).rejects.toThrow(
    "qnicd: --domid 3, but this domain is dom7 (its xenstore domid node): leave --domid out or give --domid 7",
  );
});

test("no usable domid node: auto asks for --domid, an explicit --domid is used as given", async () => {
  for (const node of [undefined, "", "seven", "123456"]) {
    await expect(backendDomid("auto", "xen", probe(DRIVER_DOMAIN, node))).rejects.toThrow(/^qnicd: this domain's xenstore has no usable domid node .*: give the domain's id with --domid N/);
    expect(await backendDomid(4, "xen", probe(DRIVER_DOMAIN, node))).toBe(4);
  }
  await expect(backendDomid("auto", "xen", probe(DRIVER_DOMAIN, new Error("EACCES")))).rejects.toThrow(
    "qnicd: reading this domain's id (domid) through /dev/xen/xenbus failed: EACCES: give it with --domid N",
  );
});

test("the sim: auto is dom0, a number is that domain, nothing is read", async () => {
  const p = probe(DRIVER_DOMAIN, "7");
  expect(await backendDomid("auto", "sim", p)).toBe(0);
  expect(await backendDomid(5, "sim", p)).toBe(5);
  expect(p.reads).toEqual([]);
});
