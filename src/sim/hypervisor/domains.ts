// The simulated host's hypervisor-level control operations: the domain registry in shared memory.
import { mkdirSync, rmSync } from "node:fs";
import { simPaths } from "../paths.ts";
import { closeAllTracked, cstr, errnoName, simxen } from "./native.ts";

/** Thrown by hypervisor control operations; `errno` is the positive errno that caused it. */
export class SimHypervisorError extends Error {
  constructor(message: string, readonly errno: number) {
    super(message);
    this.name = "SimHypervisorError";
  }
}

export function notInitialisedHint(dir: string): string {
  return `call initHypervisor(${JSON.stringify(dir)}) (or start the simulated host) first`;
}

/** Explains a negative return of a registry operation in one line. */
export function registryError(what: string, dir: string, rc: number): SimHypervisorError {
  const errno = -rc;
  const { shmDir } = simPaths(dir);
  let hint: string;
  if (errno === 2) hint = `the simulated hypervisor is not initialised in ${shmDir}: ${notInitialisedHint(dir)}`;
  else if (errno === 71) hint = `${shmDir} holds state from another simxen version: call teardownHypervisor(${JSON.stringify(dir)}) and initialise again`;
  else if (errno === 3) hint = "no such domain: check listDomains()";
  else if (errno === 28) hint = "no free domid: destroy unused domains";
  else if (errno === 1) hint = "dom0 cannot be destroyed: use teardownHypervisor() to remove the whole host";
  else hint = errnoName(errno);
  return new SimHypervisorError(`simulated hypervisor: ${what} failed (${errnoName(errno)}): ${hint}`, errno);
}

/** Creates shmDir, the registry and dom0. Idempotent; safe to race from several processes. */
export function initHypervisor(dir: string): void {
  const p = simPaths(dir);
  mkdirSync(p.evtchnDir, { recursive: true });
  const rc = simxen().sx_init(cstr(p.shmDir));
  if (rc < 0) throw registryError(`initialising ${p.shmDir}`, dir, rc);
}

/**
 * Removes every shared-memory file of this host and the event-channel sockets. Closes every sim
 * object this process still has open on it first (grant mappings are unmapped: views obtained
 * from them must no longer be touched).
 */
export function teardownHypervisor(dir: string): void {
  const p = simPaths(dir);
  closeAllTracked(p.shmDir);
  const rc = simxen().sx_teardown(cstr(p.shmDir));
  rmSync(p.evtchnDir, { recursive: true, force: true });
  if (rc < 0) throw registryError(`removing ${p.shmDir}`, dir, rc);
}

/** Creates a guest domain with `memoryPages` pages of RAM (default 2048 = 8 MiB); returns its domid. */
export function createDomain(dir: string, opts?: { memoryPages?: number }): number {
  const pages = opts?.memoryPages ?? 0;
  if (!Number.isInteger(pages) || pages < 0) throw new SimHypervisorError(`createDomain: memoryPages must be a positive integer, got ${pages}`, 22);
  const rc = simxen().sx_domain_create(cstr(simPaths(dir).shmDir), pages);
  if (rc < 0) throw registryError("creating a domain", dir, rc);
  return rc;
}

/**
 * Destroys a domain: its event channels close (peers return to unbound), its files are removed.
 * Pages a backend still has mapped stay valid until it unmaps them, as with a dying Xen domain.
 */
export function destroyDomain(dir: string, domid: number): void {
  const p = simPaths(dir);
  const rc = simxen().sx_domain_destroy(cstr(p.shmDir), cstr(p.evtchnDir), domid);
  if (rc < 0) throw registryError(`destroying dom${domid}`, dir, rc);
}

export function listDomains(dir: string): number[] {
  const out = new Uint32Array(256);
  const rc = simxen().sx_domain_list(cstr(simPaths(dir).shmDir), out, out.length);
  if (rc < 0) throw registryError("listing domains", dir, rc);
  return Array.from(out.subarray(0, rc));
}

export function domainExists(dir: string, domid: number): boolean {
  if (!Number.isInteger(domid) || domid < 0) return false;
  const rc = simxen().sx_domain_pages(cstr(simPaths(dir).shmDir), domid);
  if (rc === -2) return false; // no registry: no domains
  if (rc < 0) throw registryError(`looking up dom${domid}`, dir, rc);
  return rc > 0;
}

export interface DomainInfo {
  domid: number;
  /** Pages (4 KiB) of the domain's simulated RAM. */
  memoryPages: number;
}

/** What the registry knows about a live domain, or undefined if there is no such domain. */
export function domainInfo(dir: string, domid: number): DomainInfo | undefined {
  if (!Number.isInteger(domid) || domid < 0) return undefined;
  const rc = simxen().sx_domain_pages(cstr(simPaths(dir).shmDir), domid);
  if (rc === -2) return undefined;
  if (rc < 0) throw registryError(`looking up dom${domid}`, dir, rc);
  return rc > 0 ? { domid, memoryPages: rc } : undefined;
}

/** Whether initHypervisor() has run for this run directory (the registry exists). */
export function hypervisorInitialised(dir: string): boolean {
  return simxen().sx_domain_pages(cstr(simPaths(dir).shmDir), 0) > 0;
}
