// The xenstore paths libxl uses for a domain and its devices (libxl_device.c, libxl_xshelp.c).

/** libxl's compiled-in waits (libxl_internal.h): LIBXL_INIT_TIMEOUT and LIBXL_DESTROY_TIMEOUT, 10 s each. */
export const LIBXL_INIT_TIMEOUT_MS = 10_000;
export const LIBXL_DESTROY_TIMEOUT_MS = 10_000;

/** The toolstack (and, by default, every backend) runs in dom0. */
export const TOOLSTACK_DOMID = 0;

export const domainPath = (domid: number) => `/local/domain/${domid}`;
/** libxl's private per-domain area: /libxl/<domid>. */
export const libxlPath = (domid: number) => `/libxl/${domid}`;
export const vmPath = (uuid: string) => `/vm/${uuid}`;

export interface DeviceRef {
  /** Guest (frontend) domain. */
  domid: number;
  devid: number;
  backendDomid: number;
  /** Backend kind in the path: "vif" (Linux netback, qnicd) or "qnic" (QEMU's name). */
  backendKind: string;
}

/** F = /local/domain/<domid>/device/vif/<devid> */
export const frontendPath = (d: DeviceRef) => `${domainPath(d.domid)}/device/vif/${d.devid}`;
/** B = /local/domain/<bedom>/backend/<kind>/<domid>/<devid> */
export const backendPath = (d: DeviceRef) => `${domainPath(d.backendDomid)}/backend/${d.backendKind}/${d.domid}/${d.devid}`;
/** L = /libxl/<domid>/device/vif/<devid>: libxl's copy of the backend entries. */
export const libxlDevicePath = (d: DeviceRef) => `${libxlPath(d.domid)}/device/vif/${d.devid}`;

/** libxl__parse_backend_path: "/local/domain/%d/backend/%15[^/]/%u/%d". */
export function parseBackendPath(path: string): Omit<DeviceRef, "devid"> & { devid: number } | undefined {
  const m = /^\/local\/domain\/(\d+)\/backend\/([^/]{1,15})\/(\d+)\/(\d+)$/.exec(path);
  if (!m) return undefined;
  return { backendDomid: Number(m[1]), backendKind: m[2]!, domid: Number(m[3]), devid: Number(m[4]) };
}
