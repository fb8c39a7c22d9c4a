// What the toolstack needs from the simulated hypervisor (src/sim/hypervisor/, a colleague's
// module), behind an interface so tests can see exactly which calls the toolstack makes.

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

/** The sim hypervisor for run directory `dir`. */
export async function simHypervisor(dir: string): Promise<HypervisorOps> {
  const hv = await import("../hypervisor/index.ts");
  return {
    createDomain: async (opts) => hv.createDomain(dir, opts),
    destroyDomain: async (domid) => {
      await hv.destroyDomain(dir, domid);
    },
    listDomains: async () =>
      (await hv.listDomains(dir)).map((d: any) => ({
        domid: d.domid,
        memoryPages: d.memoryPages ?? 0,
        vcpus: d.vcpus ?? 1,
      })),
    domainExists: async (domid) => hv.domainExists(dir, domid),
  };
}
