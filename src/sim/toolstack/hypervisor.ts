// What the toolstack needs from the simulated hypervisor (src/sim/hypervisor/, a colleague's
// module), behind an interface so tests can see exactly which calls the toolstack makes.
import * as hv from "../hypervisor/index.ts";

export interface DomainInfo {
  domid: number;
  /** Pages of guest "RAM" (4 KiB each). */
  memoryPages: number;
  vcpus: number;
}

export interface HypervisorOps {
  createDomain(opts: { memoryPages?: number }): Promise<number>;
  destroyDomain(domid: number): Promise<void>;
  listDomains(): Promise<DomainInfo[]>;
  domainExists(domid: number): Promise<boolean>;
}

/** The sim hypervisor for run directory `dir`. Its domains have one vcpu. */
export function simHypervisor(dir: string): HypervisorOps {
  const pages = (domid: number) => hv.domainInfo(dir, domid)?.memoryPages ?? 0;
  return {
    createDomain: async (opts) => hv.createDomain(dir, opts),
    destroyDomain: async (domid) => hv.destroyDomain(dir, domid),
    listDomains: async () => hv.listDomains(dir).map((domid) => ({ domid, memoryPages: pages(domid), vcpus: 1 })),
    domainExists: async (domid) => hv.domainExists(dir, domid),
  };
}
