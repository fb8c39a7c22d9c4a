// A vif's hash configuration crosses from the worker serving its control ring to its other queues'
// workers as plain data: what one queue set, another hashes with; what is out of bounds is dropped.
import { expect, test } from "bun:test";
import { VifHash } from "../../workers/vif-hash.ts";
import { XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ, XEN_NETIF_CTRL_HASH_TYPES_ALL } from "../../src/xen/ctrl-netif.ts";
import { ipFrame, VECTORS } from "../net/hash-frames.ts";

function configured(): VifHash {
  const h = new VifHash(2);
  h.setAlgorithm(XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ);
  h.setFlags(XEN_NETIF_CTRL_HASH_TYPES_ALL);
  const key = Uint8Array.from([
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb,
    0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
  ]);
  h.setKey(key, key.length);
  h.setMappingSize(4);
  h.setMapping(Uint32Array.from([0, 1, 1, 0]), 4, 0);
  return h;
}

test("every successful set bumps the version; a snapshot applied elsewhere hashes the same frames the same", () => {
  const h = configured();
  expect(h.version).toBe(5);
  const other = new VifHash(2);
  other.apply(JSON.parse(JSON.stringify(h.snapshot())));
  const f = ipFrame({ v6: false });
  expect(other.hashFrame(f, 0, f.length)).toBe(true);
  expect(other.value).toBe(VECTORS.ipv4Tcp);
  expect(Array.from(other.mapping.subarray(0, other.size))).toEqual([0, 1, 1, 0]);
});

test("a shared configuration naming a queue the vif does not have, or an oversized key, is dropped whole", () => {
  const other = new VifHash(2);
  other.apply({ ...configured().snapshot(), mapping: [0, 5, 0, 0] });
  other.apply({ ...configured().snapshot(), key: new Array(41).fill(1) });
  expect(other.alg).toBe(0);
  const f = ipFrame({ v6: false });
  expect(other.hashFrame(f, 0, f.length)).toBe(false);
});
