// The simulated Xen hypervisor: domains, grant tables and event channels across processes, in
// shared memory under simPaths(dir).shmDir. Backends reach it through SimPlatform
// (src/platform/sim.ts); simulated guests through openGuestDomain().
export {
  initHypervisor,
  teardownHypervisor,
  createDomain,
  destroyDomain,
  listDomains,
  domainExists,
  domainInfo,
  hypervisorInitialised,
  type DomainInfo,
  SimHypervisorError,
} from "./domains.ts";
export { openGuestDomain, type GuestDomain, type GrantEntry } from "./guest.ts";
export { SimEventChannelDevice, ECS_FREE, ECS_UNBOUND, ECS_INTERDOMAIN, EV_PENDING, EV_MASKED, EV_FIRED, type SimPortState } from "./evtchn.ts";
export { SimGrantDevice } from "./gntdev.ts";
export { GrantAudit, openGrantAudit, AuditOp, auditOpName, type AuditOpCode, type GrantAccessRecord, type GrantAuditWindow } from "./audit.ts";
export { SIM_PAGE_SIZE } from "./native.ts";
