// Every size, offset and constant in src/xen is checked against Debian's libxen-dev headers by
// compiling a C program that prints the headers' values: a wrong offset here would silently corrupt
// guest memory, so nothing in the ABI is taken on trust.
import { describe, expect, test, beforeAll } from "bun:test";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureDebPackages } from "../support/apt.ts";
import * as ring from "../../src/xen/ring.ts";
import * as netif from "../../src/xen/netif.ts";
import * as ctrl from "../../src/xen/ctrl-netif.ts";
import * as gnt from "../../src/xen/grant-table.ts";
import * as evtchn from "../../src/xen/evtchn.ts";
import { XenbusState } from "../../src/xen/xenbus-state.ts";
import * as xs from "../../src/xen/xs-wire.ts";

type Check = [label: string, ours: number, cExpr: string];

const checks: Check[] = [
  // ring.h, through the netif ring instantiations
  ["sring header size", ring.RING_HEADER_SIZE, "offsetof(struct netif_tx_sring, ring)"],
  ["req_prod", ring.RingHeader.reqProd, "offsetof(struct netif_tx_sring, req_prod)"],
  ["req_event", ring.RingHeader.reqEvent, "offsetof(struct netif_tx_sring, req_event)"],
  ["rsp_prod", ring.RingHeader.rspProd, "offsetof(struct netif_tx_sring, rsp_prod)"],
  ["rsp_event", ring.RingHeader.rspEvent, "offsetof(struct netif_tx_sring, rsp_event)"],
  ["tx ring size", netif.NETIF_TX_RING_SIZE, "__CONST_RING_SIZE(netif_tx, 4096)"],
  ["rx ring size", netif.NETIF_RX_RING_SIZE, "__CONST_RING_SIZE(netif_rx, 4096)"],
  ["ctrl ring size", netif.NETIF_CTRL_RING_SIZE, "__CONST_RING_SIZE(xen_netif_ctrl, 4096)"],
  ["tx slot size", netif.NETIF_TX_SLOT_SIZE, "sizeof(union netif_tx_sring_entry)"],
  ["rx slot size", netif.NETIF_RX_SLOT_SIZE, "sizeof(union netif_rx_sring_entry)"],
  ["ctrl slot size", netif.NETIF_CTRL_SLOT_SIZE, "sizeof(union xen_netif_ctrl_sring_entry)"],
  // netif.h structs
  ["tx request size", netif.NETIF_TX_REQUEST_SIZE, "sizeof(struct netif_tx_request)"],
  ["tx request gref", netif.TxRequest.gref, "offsetof(struct netif_tx_request, gref)"],
  ["tx request offset", netif.TxRequest.offset, "offsetof(struct netif_tx_request, offset)"],
  ["tx request flags", netif.TxRequest.flags, "offsetof(struct netif_tx_request, flags)"],
  ["tx request id", netif.TxRequest.id, "offsetof(struct netif_tx_request, id)"],
  ["tx request size field", netif.TxRequest.size, "offsetof(struct netif_tx_request, size)"],
  ["tx response size", netif.NETIF_TX_RESPONSE_SIZE, "sizeof(struct netif_tx_response)"],
  ["tx response id", netif.TxResponse.id, "offsetof(struct netif_tx_response, id)"],
  ["tx response status", netif.TxResponse.status, "offsetof(struct netif_tx_response, status)"],
  ["rx request size", netif.NETIF_RX_REQUEST_SIZE, "sizeof(struct netif_rx_request)"],
  ["rx request id", netif.RxRequest.id, "offsetof(struct netif_rx_request, id)"],
  ["rx request gref", netif.RxRequest.gref, "offsetof(struct netif_rx_request, gref)"],
  ["rx response size", netif.NETIF_RX_RESPONSE_SIZE, "sizeof(struct netif_rx_response)"],
  ["rx response id", netif.RxResponse.id, "offsetof(struct netif_rx_response, id)"],
  ["rx response offset", netif.RxResponse.offset, "offsetof(struct netif_rx_response, offset)"],
  ["rx response flags", netif.RxResponse.flags, "offsetof(struct netif_rx_response, flags)"],
  ["rx response status", netif.RxResponse.status, "offsetof(struct netif_rx_response, status)"],
  ["extra info size", netif.NETIF_EXTRA_INFO_SIZE, "sizeof(struct netif_extra_info)"],
  ["extra type", netif.ExtraInfo.type, "offsetof(struct netif_extra_info, type)"],
  ["extra flags", netif.ExtraInfo.flags, "offsetof(struct netif_extra_info, flags)"],
  ["extra gso size", netif.ExtraInfo.gsoSize, "offsetof(struct netif_extra_info, u.gso.size)"],
  ["extra gso type", netif.ExtraInfo.gsoType, "offsetof(struct netif_extra_info, u.gso.type)"],
  ["extra gso pad", netif.ExtraInfo.gsoPad, "offsetof(struct netif_extra_info, u.gso.pad)"],
  ["extra gso features", netif.ExtraInfo.gsoFeatures, "offsetof(struct netif_extra_info, u.gso.features)"],
  ["extra mcast addr", netif.ExtraInfo.mcastAddr, "offsetof(struct netif_extra_info, u.mcast.addr)"],
  ["extra hash type", netif.ExtraInfo.hashType, "offsetof(struct netif_extra_info, u.hash.type)"],
  ["extra hash alg", netif.ExtraInfo.hashAlg, "offsetof(struct netif_extra_info, u.hash.algorithm)"],
  ["extra hash value", netif.ExtraInfo.hashValue, "offsetof(struct netif_extra_info, u.hash.value)"],
  ["ctrl request size", netif.NETIF_CTRL_REQUEST_SIZE, "sizeof(struct xen_netif_ctrl_request)"],
  ["ctrl response size", netif.NETIF_CTRL_RESPONSE_SIZE, "sizeof(struct xen_netif_ctrl_response)"],
  ["NETTXF_csum_blank", netif.NETTXF_csum_blank, "NETTXF_csum_blank"],
  ["NETTXF_data_validated", netif.NETTXF_data_validated, "NETTXF_data_validated"],
  ["NETTXF_more_data", netif.NETTXF_more_data, "NETTXF_more_data"],
  ["NETTXF_extra_info", netif.NETTXF_extra_info, "NETTXF_extra_info"],
  ["NETRXF_data_validated", netif.NETRXF_data_validated, "NETRXF_data_validated"],
  ["NETRXF_csum_blank", netif.NETRXF_csum_blank, "NETRXF_csum_blank"],
  ["NETRXF_more_data", netif.NETRXF_more_data, "NETRXF_more_data"],
  ["NETRXF_extra_info", netif.NETRXF_extra_info, "NETRXF_extra_info"],
  ["NETRXF_gso_prefix", netif.NETRXF_gso_prefix, "NETRXF_gso_prefix"],
  ["NETIF_RSP_DROPPED", netif.NETIF_RSP_DROPPED, "NETIF_RSP_DROPPED"],
  ["NETIF_RSP_ERROR", netif.NETIF_RSP_ERROR, "NETIF_RSP_ERROR"],
  ["NETIF_RSP_OKAY", netif.NETIF_RSP_OKAY, "NETIF_RSP_OKAY"],
  ["NETIF_RSP_NULL", netif.NETIF_RSP_NULL, "NETIF_RSP_NULL"],
  ["EXTRA_TYPE_NONE", netif.XEN_NETIF_EXTRA_TYPE_NONE, "XEN_NETIF_EXTRA_TYPE_NONE"],
  ["EXTRA_TYPE_GSO", netif.XEN_NETIF_EXTRA_TYPE_GSO, "XEN_NETIF_EXTRA_TYPE_GSO"],
  ["EXTRA_TYPE_MCAST_ADD", netif.XEN_NETIF_EXTRA_TYPE_MCAST_ADD, "XEN_NETIF_EXTRA_TYPE_MCAST_ADD"],
  ["EXTRA_TYPE_MCAST_DEL", netif.XEN_NETIF_EXTRA_TYPE_MCAST_DEL, "XEN_NETIF_EXTRA_TYPE_MCAST_DEL"],
  ["EXTRA_TYPE_HASH", netif.XEN_NETIF_EXTRA_TYPE_HASH, "XEN_NETIF_EXTRA_TYPE_HASH"],
  ["EXTRA_TYPE_MAX", netif.XEN_NETIF_EXTRA_TYPE_MAX, "XEN_NETIF_EXTRA_TYPE_MAX"],
  ["EXTRA_FLAG_MORE", netif.XEN_NETIF_EXTRA_FLAG_MORE, "XEN_NETIF_EXTRA_FLAG_MORE"],
  ["GSO_TYPE_NONE", netif.XEN_NETIF_GSO_TYPE_NONE, "XEN_NETIF_GSO_TYPE_NONE"],
  ["GSO_TYPE_TCPV4", netif.XEN_NETIF_GSO_TYPE_TCPV4, "XEN_NETIF_GSO_TYPE_TCPV4"],
  ["GSO_TYPE_TCPV6", netif.XEN_NETIF_GSO_TYPE_TCPV6, "XEN_NETIF_GSO_TYPE_TCPV6"],
  ["NR_SLOTS_MIN", netif.XEN_NETIF_NR_SLOTS_MIN, "XEN_NETIF_NR_SLOTS_MIN"],
  ["CTRL_TYPE_INVALID", netif.XEN_NETIF_CTRL_TYPE_INVALID, "XEN_NETIF_CTRL_TYPE_INVALID"],
  ["CTRL_TYPE_GET_HASH_FLAGS", netif.XEN_NETIF_CTRL_TYPE_GET_HASH_FLAGS, "XEN_NETIF_CTRL_TYPE_GET_HASH_FLAGS"],
  ["CTRL_TYPE_SET_HASH_FLAGS", netif.XEN_NETIF_CTRL_TYPE_SET_HASH_FLAGS, "XEN_NETIF_CTRL_TYPE_SET_HASH_FLAGS"],
  ["CTRL_TYPE_SET_HASH_KEY", netif.XEN_NETIF_CTRL_TYPE_SET_HASH_KEY, "XEN_NETIF_CTRL_TYPE_SET_HASH_KEY"],
  ["CTRL_TYPE_GET_HASH_MAPPING_SIZE", netif.XEN_NETIF_CTRL_TYPE_GET_HASH_MAPPING_SIZE, "XEN_NETIF_CTRL_TYPE_GET_HASH_MAPPING_SIZE"],
  ["CTRL_TYPE_SET_HASH_MAPPING_SIZE", netif.XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING_SIZE, "XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING_SIZE"],
  ["CTRL_TYPE_SET_HASH_MAPPING", netif.XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING, "XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING"],
  ["CTRL_TYPE_SET_HASH_ALGORITHM", netif.XEN_NETIF_CTRL_TYPE_SET_HASH_ALGORITHM, "XEN_NETIF_CTRL_TYPE_SET_HASH_ALGORITHM"],
  ["CTRL_TYPE_GET_GREF_MAPPING_SIZE", netif.XEN_NETIF_CTRL_TYPE_GET_GREF_MAPPING_SIZE, "XEN_NETIF_CTRL_TYPE_GET_GREF_MAPPING_SIZE"],
  ["CTRL_TYPE_ADD_GREF_MAPPING", netif.XEN_NETIF_CTRL_TYPE_ADD_GREF_MAPPING, "XEN_NETIF_CTRL_TYPE_ADD_GREF_MAPPING"],
  ["CTRL_TYPE_DEL_GREF_MAPPING", netif.XEN_NETIF_CTRL_TYPE_DEL_GREF_MAPPING, "XEN_NETIF_CTRL_TYPE_DEL_GREF_MAPPING"],
  ["CTRL_STATUS_SUCCESS", netif.XEN_NETIF_CTRL_STATUS_SUCCESS, "XEN_NETIF_CTRL_STATUS_SUCCESS"],
  ["CTRL_STATUS_NOT_SUPPORTED", netif.XEN_NETIF_CTRL_STATUS_NOT_SUPPORTED, "XEN_NETIF_CTRL_STATUS_NOT_SUPPORTED"],
  ["CTRL_STATUS_INVALID_PARAMETER", netif.XEN_NETIF_CTRL_STATUS_INVALID_PARAMETER, "XEN_NETIF_CTRL_STATUS_INVALID_PARAMETER"],
  ["CTRL_STATUS_BUFFER_OVERFLOW", netif.XEN_NETIF_CTRL_STATUS_BUFFER_OVERFLOW, "XEN_NETIF_CTRL_STATUS_BUFFER_OVERFLOW"],
  ["CTRL_HASH_ALGORITHM_NONE", netif.XEN_NETIF_CTRL_HASH_ALGORITHM_NONE, "XEN_NETIF_CTRL_HASH_ALGORITHM_NONE"],
  ["CTRL_HASH_ALGORITHM_TOEPLITZ", netif.XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ, "XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ"],
  ["XEN_NETIF_MAX_TX_SIZE", netif.XEN_NETIF_MAX_TX_SIZE, "XEN_NETIF_MAX_TX_SIZE"],
  // netif.h control ring
  ["ctrl request id", ctrl.CtrlRequest.id, "offsetof(struct xen_netif_ctrl_request, id)"],
  ["ctrl request type", ctrl.CtrlRequest.type, "offsetof(struct xen_netif_ctrl_request, type)"],
  ["ctrl request data[0]", ctrl.CtrlRequest.data0, "offsetof(struct xen_netif_ctrl_request, data[0])"],
  ["ctrl request data[1]", ctrl.CtrlRequest.data1, "offsetof(struct xen_netif_ctrl_request, data[1])"],
  ["ctrl request data[2]", ctrl.CtrlRequest.data2, "offsetof(struct xen_netif_ctrl_request, data[2])"],
  ["ctrl response id", ctrl.CtrlResponse.id, "offsetof(struct xen_netif_ctrl_response, id)"],
  ["ctrl response type", ctrl.CtrlResponse.type, "offsetof(struct xen_netif_ctrl_response, type)"],
  ["ctrl response status", ctrl.CtrlResponse.status, "offsetof(struct xen_netif_ctrl_response, status)"],
  ["ctrl response data", ctrl.CtrlResponse.data, "offsetof(struct xen_netif_ctrl_response, data)"],
  ...(["_XEN_NETIF_CTRL_HASH_TYPE_IPV4", "_XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP", "_XEN_NETIF_CTRL_HASH_TYPE_IPV6", "_XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP",
    "XEN_NETIF_CTRL_HASH_TYPE_IPV4", "XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP", "XEN_NETIF_CTRL_HASH_TYPE_IPV6", "XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP",
    "XEN_NETIF_CTRL_TYPE_SET_HASH_KEY", "XEN_NETIF_CTRL_STATUS_NOT_SUPPORTED", "NETIF_CTRL_RING_SIZE"] as const)
    .map((n): Check => [`ctrl-netif ${n}`, (ctrl as Record<string, unknown>)[n] as number, n === "NETIF_CTRL_RING_SIZE" ? "__CONST_RING_SIZE(xen_netif_ctrl, 4096)" : n]),
  // xenbus.h
  ...Object.entries(XenbusState).map(([k, v]): Check => [`XenbusState${k}`, v, `XenbusState${k}`]),
  // xs_wire.h
  ...Object.entries(xs.XsOp).map(([k, v]): Check => [`XS_${k}`, v, `XS_${k}`]),
  ["xsd_sockmsg size", xs.XS_HEADER_SIZE, "sizeof(struct xsd_sockmsg)"],
  ["xsd_sockmsg type", xs.XsHeader.type, "offsetof(struct xsd_sockmsg, type)"],
  ["xsd_sockmsg req_id", xs.XsHeader.reqId, "offsetof(struct xsd_sockmsg, req_id)"],
  ["xsd_sockmsg tx_id", xs.XsHeader.txId, "offsetof(struct xsd_sockmsg, tx_id)"],
  ["xsd_sockmsg len", xs.XsHeader.len, "offsetof(struct xsd_sockmsg, len)"],
  ["XENSTORE_PAYLOAD_MAX", xs.XENSTORE_PAYLOAD_MAX, "XENSTORE_PAYLOAD_MAX"],
  ["XENSTORE_ABS_PATH_MAX", xs.XENSTORE_ABS_PATH_MAX, "XENSTORE_ABS_PATH_MAX"],
  ["XENSTORE_REL_PATH_MAX", xs.XENSTORE_REL_PATH_MAX, "XENSTORE_REL_PATH_MAX"],
  ["xsd_errors count", Object.keys(xs.XsErrors).length, "sizeof(xsd_errors) / sizeof(xsd_errors[0])"],
  ...Object.entries(xs.XsErrors).map(([k, v], i): Check => [`xsd_errors[${i}] ${k}`, v, `(strcmp(xsd_errors[${i}].errstring, "${k}") == 0 ? xsd_errors[${i}].errnum : -9999)`]),
  // grant_table.h
  ["grant_entry_v1 size", gnt.GRANT_ENTRY_V1_SIZE, "sizeof(grant_entry_v1_t)"],
  ["grant_entry_v1 flags", gnt.GrantEntryV1.flags, "offsetof(grant_entry_v1_t, flags)"],
  ["grant_entry_v1 domid", gnt.GrantEntryV1.domid, "offsetof(grant_entry_v1_t, domid)"],
  ["grant_entry_v1 frame", gnt.GrantEntryV1.frame, "offsetof(grant_entry_v1_t, frame)"],
  ...(["GTF_invalid", "GTF_permit_access", "GTF_accept_transfer", "GTF_transitive", "GTF_type_mask", "GTF_readonly",
    "GTF_reading", "GTF_writing", "GTF_sub_page", "GNTCOPY_source_gref", "GNTCOPY_dest_gref", "GNTST_okay",
    "GNTST_general_error", "GNTST_bad_domain", "GNTST_bad_gntref", "GNTST_bad_handle", "GNTST_bad_virt_addr",
    "GNTST_bad_dev_addr", "GNTST_no_device_space", "GNTST_permission_denied", "GNTST_bad_page", "GNTST_bad_copy_arg",
    "GNTST_address_too_big", "GNTST_eagain", "IOCTL_GNTDEV_MAP_GRANT_REF", "IOCTL_GNTDEV_UNMAP_GRANT_REF",
    "IOCTL_GNTDEV_GET_OFFSET_FOR_VADDR", "IOCTL_GNTDEV_SET_MAX_GRANTS", "IOCTL_GNTDEV_SET_UNMAP_NOTIFY",
    "IOCTL_GNTDEV_GRANT_COPY"] as const).map((n): Check => [n, (gnt as Record<string, unknown>)[n] as number, n]),
  // gntdev.h structs
  ["gntdev segment size", gnt.GNTDEV_COPY_SEGMENT_SIZE, "sizeof(struct ioctl_gntdev_grant_copy_segment)"],
  ["gntdev segment source", gnt.GntdevCopySegment.source, "offsetof(struct ioctl_gntdev_grant_copy_segment, source)"],
  ["gntdev segment dest", gnt.GntdevCopySegment.dest, "offsetof(struct ioctl_gntdev_grant_copy_segment, dest)"],
  ["gntdev segment len", gnt.GntdevCopySegment.len, "offsetof(struct ioctl_gntdev_grant_copy_segment, len)"],
  ["gntdev segment flags", gnt.GntdevCopySegment.flags, "offsetof(struct ioctl_gntdev_grant_copy_segment, flags)"],
  ["gntdev segment status", gnt.GntdevCopySegment.status, "offsetof(struct ioctl_gntdev_grant_copy_segment, status)"],
  ["gntdev segment foreign ref", gnt.GntdevCopySegment.foreignRef, "offsetof(struct ioctl_gntdev_grant_copy_segment, source.foreign.ref)"],
  ["gntdev segment foreign offset", gnt.GntdevCopySegment.foreignOffset, "offsetof(struct ioctl_gntdev_grant_copy_segment, source.foreign.offset)"],
  ["gntdev segment foreign domid", gnt.GntdevCopySegment.foreignDomid, "offsetof(struct ioctl_gntdev_grant_copy_segment, source.foreign.domid)"],
  ["gntdev map count", gnt.GntdevMapGrantRef.count, "offsetof(struct ioctl_gntdev_map_grant_ref, count)"],
  ["gntdev map pad", gnt.GntdevMapGrantRef.pad, "offsetof(struct ioctl_gntdev_map_grant_ref, pad)"],
  ["gntdev map index", gnt.GntdevMapGrantRef.index, "offsetof(struct ioctl_gntdev_map_grant_ref, index)"],
  ["gntdev map refs", gnt.GntdevMapGrantRef.refs, "offsetof(struct ioctl_gntdev_map_grant_ref, refs)"],
  ["gntdev map ref size", gnt.GntdevMapGrantRef.refSize, "sizeof(struct ioctl_gntdev_grant_ref)"],
  ["gntdev unmap index", gnt.GntdevUnmapGrantRef.index, "offsetof(struct ioctl_gntdev_unmap_grant_ref, index)"],
  ["gntdev unmap count", gnt.GntdevUnmapGrantRef.count, "offsetof(struct ioctl_gntdev_unmap_grant_ref, count)"],
  ["gntdev unmap size", gnt.GntdevUnmapGrantRef.size, "sizeof(struct ioctl_gntdev_unmap_grant_ref)"],
  ["gntdev copy count", gnt.GntdevGrantCopy.count, "offsetof(struct ioctl_gntdev_grant_copy, count)"],
  ["gntdev copy segments", gnt.GntdevGrantCopy.segments, "offsetof(struct ioctl_gntdev_grant_copy, segments)"],
  ["gntdev copy size", gnt.GntdevGrantCopy.size, "sizeof(struct ioctl_gntdev_grant_copy)"],
  // evtchn.h
  ...(["IOCTL_EVTCHN_BIND_VIRQ", "IOCTL_EVTCHN_BIND_INTERDOMAIN", "IOCTL_EVTCHN_BIND_UNBOUND_PORT",
    "IOCTL_EVTCHN_UNBIND", "IOCTL_EVTCHN_NOTIFY", "IOCTL_EVTCHN_RESET", "IOCTL_EVTCHN_RESTRICT_DOMID"] as const)
    .map((n): Check => [n, (evtchn as Record<string, unknown>)[n] as number, n]),
  ["evtchn bind_interdomain remote_domain", evtchn.EvtchnBindInterdomain.remoteDomain, "offsetof(struct ioctl_evtchn_bind_interdomain, remote_domain)"],
  ["evtchn bind_interdomain remote_port", evtchn.EvtchnBindInterdomain.remotePort, "offsetof(struct ioctl_evtchn_bind_interdomain, remote_port)"],
  ["evtchn bind_interdomain size", evtchn.EvtchnBindInterdomain.size, "sizeof(struct ioctl_evtchn_bind_interdomain)"],
  ["evtchn port size", evtchn.EVTCHN_PORT_SIZE, "sizeof(evtchn_port_t)"],
];

function cProgram(): string {
  const lines = checks.map(([label, , expr], i) => `  printf("%d %lld\\n", ${i}, (long long)(${expr})); /* ${label} */`);
  return `#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <sys/ioctl.h>
#include <xen/xen.h>
#include <xen/grant_table.h>
#include <xen/event_channel.h>
#include <xen/io/netif.h>
#include <xen/io/xenbus.h>
#include <xen/io/xs_wire.h>
#include <xen/sys/gntdev.h>
#include <xen/sys/evtchn.h>
int main(void) {
${lines.join("\n")}
  return 0;
}
`;
}

let headerValues: Map<number, number>;

beforeAll(() => {
  ensureDebPackages(["libxen-dev", "gcc"]);
  const dir = mkdtempSync(join(tmpdir(), "qnicd-abi-"));
  try {
    writeFileSync(join(dir, "abi.c"), cProgram());
    const cc = Bun.spawnSync(["gcc", "-Wall", "-o", join(dir, "abi"), join(dir, "abi.c")], { stderr: "pipe" });
    if (cc.exitCode !== 0) throw new Error(`compiling the ABI probe against libxen-dev failed:\n${cc.stderr.toString()}`);
    const run = Bun.spawnSync([join(dir, "abi")], { stdout: "pipe" });
    headerValues = new Map(run.stdout.toString().trim().split("\n").map((l) => {
      const [i, v] = l.split(" ");
      return [Number(i), Number(v)];
    }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

describe("src/xen matches libxen-dev headers", () => {
  test("every size, offset and constant equals the header's", () => {
    const mismatches = checks
      .map(([label, ours], i) => ({ label, ours, header: headerValues.get(i) }))
      .filter((c) => c.ours !== c.header);
    expect(mismatches).toEqual([]);
    expect(headerValues.size).toBe(checks.length);
  });
});

describe("ring index math", () => {
  test("index difference wraps mod 2^32", () => {
    expect(ring.idxDiff(3, 0xfffffffe)).toBe(5);
    expect(ring.idxDiff(0, 0)).toBe(0);
  });
  test("a producer more than a ring ahead of the responses is an overflow, exactly a ring is not", () => {
    expect(ring.requestProdOverflow(256, 0, 256)).toBe(false);
    expect(ring.requestProdOverflow(257, 0, 256)).toBe(true);
    expect(ring.requestProdOverflow(0x100, 0xffffff00, 256)).toBe(true);
    expect(ring.requestProdOverflow(0x10, 0xffffff10, 256)).toBe(false);
  });
  test("consumer overflow once a full ring of requests awaits responses", () => {
    expect(ring.requestConsOverflow(255, 0, 256)).toBe(false);
    expect(ring.requestConsOverflow(256, 0, 256)).toBe(true);
  });
  test("notify only when the new producer index passes the event index", () => {
    // RING_PUSH_RESPONSES_AND_CHECK_NOTIFY with rsp_event = old + 1: always notify
    expect(ring.needsNotify(5, 4, 5)).toBe(true);
    // frontend asked to be notified later than what we pushed
    expect(ring.needsNotify(5, 4, 9)).toBe(false);
    // event index already passed before this push: no notify
    expect(ring.needsNotify(5, 4, 3)).toBe(false);
    expect(ring.needsNotify(2, 0xfffffffe, 0xffffffff)).toBe(true);
  });
  test("slot offsets wrap at the ring size after the 64-byte header", () => {
    expect(ring.slotOffset(0, 256, 12)).toBe(64);
    expect(ring.slotOffset(257, 256, 12)).toBe(64 + 12);
  });
});
