// The sim's libxl: create/destroy domains and attach/detach vifs, writing what libxl writes and
// waiting where libxl waits. The `xl` command line (xl.ts) is a thin layer over this.
import { randomUUID } from "node:crypto";
import type { XenstoreClient } from "../../xenstore/index.ts";
import { buildPost, makeDomainNodes, removeDomainNodes } from "./domain.ts";
import type { GuestRunner } from "./guests.ts";
import type { HypervisorOps } from "./hypervisor.ts";
import { libxlLogTo, type LibxlLog } from "./libxl-log.ts";
import {
  DeviceExistsError,
  deviceRef,
  nicDefaults,
  removeNic,
  waitNicConnection,
  writeNicNodes,
  type NicConfig,
} from "./nic.ts";
import { backendPath, domainPath, frontendPath, LIBXL_DESTROY_TIMEOUT_MS, LIBXL_INIT_TIMEOUT_MS, libxlPath, parseBackendPath, TOOLSTACK_DOMID, type DeviceRef } from "./paths.ts";

/** A failure already explained by libxl-style lines on the log; `message` is the one-line summary. */
export class ToolstackError extends Error {
  override name = "ToolstackError";
}

export interface ToolstackOptions {
  xs: XenstoreClient;
  hv: HypervisorOps;
  /** Where libxl-style lines go (default: stderr). */
  log?: LibxlLog;
  /** libxl's 10 s waits; tests shorten them. */
  initTimeoutMs?: number;
  destroyTimeoutMs?: number;
  /** Starts and kills guest drivers (netfront processes on the sim); none by default. */
  guests?: GuestRunner;
}

export interface CreateOptions {
  vifs?: number;
  memoryMb?: number;
  /** The domain's vCPUs (xl's vcpus=; default 1): libxl writes cpu/<i>/availability for each. */
  vcpus?: number;
  /** Per-vif settings for vif i (devid i); missing ones get libxl's defaults. */
  nics?: Partial<NicConfig>[];
  backendKind?: string;
  backendDomid?: number;
  /** Do not wait for a backend to answer (sim only: for use before any backend exists). */
  noWait?: boolean;
  /** Boot the guest: start its driver for every vif (needs ToolstackOptions.guests). */
  boot?: { ip?: string };
}

export interface CreatedDomain {
  domid: number;
  name: string;
  nics: (NicConfig & { frontend: string; backend: string })[];
}

export interface ListedDomain {
  name: string;
  domid: number;
  memMb: number;
  vcpus: number;
  state: string;
}

export class Toolstack {
  readonly xs: XenstoreClient;
  readonly hv: HypervisorOps;
  readonly log: LibxlLog;
  readonly initTimeoutMs: number;
  readonly destroyTimeoutMs: number;
  readonly guests?: GuestRunner;

  constructor(opts: ToolstackOptions) {
    this.guests = opts.guests;
    this.xs = opts.xs;
    this.hv = opts.hv;
    this.log = opts.log ?? libxlLogTo((l) => process.stderr.write(`${l}\n`));
    this.initTimeoutMs = opts.initTimeoutMs ?? LIBXL_INIT_TIMEOUT_MS;
    this.destroyTimeoutMs = opts.destroyTimeoutMs ?? LIBXL_DESTROY_TIMEOUT_MS;
  }

  /** xl's find_domain: a domid, or a name looked up in /local/domain/<domid>/name. */
  async findDomain(qualifier: string): Promise<number> {
    if (/^\d+$/.test(qualifier)) {
      const domid = Number(qualifier);
      if (await this.hv.domainExists(domid)) return domid;
    } else {
      const domid = await this.nameToDomid(qualifier);
      if (domid !== undefined) return domid;
    }
    throw new ToolstackError(`${qualifier} is an invalid domain identifier (rc=-6)`);
  }

  async nameToDomid(name: string): Promise<number | undefined> {
    for (const d of await this.hv.listDomains()) {
      if ((await this.xs.tryRead(`${domainPath(d.domid)}/name`)) === name) return d.domid;
    }
    return undefined;
  }

  /** xl create: domain, its nodes, INTRODUCE, vifs; waits for every backend unless noWait. */
  async create(name: string, opts: CreateOptions = {}): Promise<CreatedDomain> {
    if ((await this.nameToDomid(name)) !== undefined) {
      this.log("error", "libxl_dom.c:libxl__domain_rename", undefined, `domain with name "${name}" already exists.`);
      throw new ToolstackError(`cannot create ${name}: a domain with that name already exists`);
    }
    const memoryPages = opts.memoryMb === undefined ? undefined : opts.memoryMb * 256;
    const domid = await this.hv.createDomain(memoryPages === undefined ? {} : { memoryPages });
    try {
      const info = (await this.hv.listDomains()).find((d) => d.domid === domid);
      const rec = {
        domid,
        name,
        uuid: randomUUID(),
        maxMemKb: (info?.memoryPages ?? memoryPages ?? 0) * 4,
        vcpus: Math.max(1, opts.vcpus ?? info?.vcpus ?? 1),
      };
      await makeDomainNodes(this.xs, rec);
      await buildPost(this.xs, rec);
      // libxl__device_nic_set_devids numbers the config's nics 0, 1, ...; each is added in turn,
      // then all waits run in parallel (libxl's multidev).
      const nics = Array.from({ length: opts.vifs ?? opts.nics?.length ?? 0 }, (_, i) =>
        nicDefaults(i, { backendKind: opts.backendKind, backendDomid: opts.backendDomid, ...opts.nics?.[i] }),
      );
      for (const nic of nics) await writeNicNodes(this.xs, domid, nic);
      if (!opts.noWait) {
        const results = await Promise.all(nics.map((nic) => waitNicConnection(this.xs, deviceRef(domid, nic), this.initTimeoutMs, this.log)));
        const failed = results.filter((r) => !r.ok);
        if (failed.length) {
          this.log("error", "libxl_create.c:domcreate_attach_devices", domid, "unable to add vif devices");
          throw new ToolstackError(
            `cannot create ${name}: no backend brought vif ${failed.map((f) => `${domid}.${f.devid}`).join(", ")} to InitWait within ${this.initTimeoutMs / 1000} s` +
              ` (is the backend running? --no-wait skips this); the domain was destroyed`,
          );
        }
      }
      // libxl unpauses the guest once its devices are added; its netfront then probes each vif.
      if (opts.boot) for (const [i, nic] of nics.entries()) await this.startGuest(domid, nic.devid, i === 0 ? opts.boot.ip : undefined);
      return {
        domid,
        name,
        nics: nics.map((n) => ({ ...n, frontend: frontendPath(deviceRef(domid, n)), backend: backendPath(deviceRef(domid, n)) })),
      };
    } catch (e) {
      // domcreate_complete: a failed creation destroys what was built.
      await this.destroyDomid(domid, { noWait: opts.noWait }).catch((d) =>
        this.log("error", "libxl_create.c:domcreate_destruction_cb", domid, `unable to destroy domain following failed creation: ${(d as Error).message}`),
      );
      throw e;
    }
  }

  /** xl destroy NAME|DOMID. */
  async destroy(qualifier: string, opts: { noWait?: boolean } = {}): Promise<void> {
    await this.destroyDomid(await this.findDomain(qualifier), opts);
  }

  /**
   * libxl__destroy_domid: remove every device (forced, 10 s wait for Closed each, in parallel),
   * then the domain's nodes, then the domain; finally RELEASE, standing in for xenstored noticing
   * the dead domain (VIRQ_DOM_EXC) on real Xen. `noWait`: see RemoveOptions.skipWaitIfUnclaimed.
   */
  async destroyDomid(domid: number, opts: { noWait?: boolean } = {}): Promise<void> {
    if (!(await this.hv.domainExists(domid))) {
      this.log("error", "libxl_domain.c:libxl__destroy_domid", domid, "Non-existant domain");
      throw new ToolstackError(`destroy failed: no domain ${domid}`);
    }
    // libxl pauses the domain before tearing its devices down: the guest never answers again.
    await this.guests?.kill(domid);
    const devs = await this.listDevices(domid);
    const rcs = await Promise.all(
      devs.map((d) => removeNic(this.xs, d, { force: "on", timeoutMs: this.destroyTimeoutMs, skipWaitIfUnclaimed: opts.noWait }, this.log)),
    );
    if (rcs.some((rc) => rc !== 0)) this.log("error", "libxl_domain.c:devices_destroy_cb", domid, "libxl__devices_destroy failed");
    await removeDomainNodes(this.xs, domid);
    await this.hv.destroyDomain(domid);
    if (await this.xs.isDomainIntroduced(domid).catch(() => false)) await this.xs.release(domid);
  }

  private async startGuest(domid: number, devid: number, ip: string | undefined): Promise<void> {
    if (!this.guests) throw new ToolstackError("this toolstack has no guest runner: cannot boot guests");
    this.guests.start(domid, devid, { ip, vcpus: await this.domainVcpus(domid) });
  }

  /** The domain's vCPUs as its kernel would see them: the cpu/<i> nodes libxl__build_post wrote. */
  async domainVcpus(domid: number): Promise<number | undefined> {
    const cpus = await this.xs.directory(`${domainPath(domid)}/cpu`).catch(() => [] as string[]);
    return cpus.length || undefined;
  }

  /** xl network-attach: the next devid (libxl__device_nextid), nodes, wait for InitWait. */
  async networkAttach(qualifier: string, nic: Partial<NicConfig> = {}, opts: { noWait?: boolean; boot?: { ip?: string } } = {}): Promise<NicConfig> {
    const domid = await this.findDomain(qualifier);
    const existing = await this.xs.directory(`${libxlPath(domid)}/device/vif`).catch(() => [] as string[]);
    const devid = nic.devid ?? (existing.length ? Math.max(...existing.map(Number)) + 1 : 0);
    const cfg = nicDefaults(devid, nic);
    try {
      await writeNicNodes(this.xs, domid, cfg);
    } catch (e) {
      if (!(e instanceof DeviceExistsError)) throw e;
      this.log("error", "libxl_device.c:libxl__device_add_async", domid, "device already exists in xenstore");
      throw new ToolstackError("libxl_device_nic_add failed.");
    }
    if (!opts.noWait) {
      const r = await waitNicConnection(this.xs, deviceRef(domid, cfg), this.initTimeoutMs, this.log);
      if (!r.ok) {
        // libxl leaves the nodes of a failed add in place.
        this.log("error", "libxl_device.c:device_addrm_aocomplete", domid, `Unable to add vif with id ${devid}`);
        throw new ToolstackError("libxl_device_nic_add failed.");
      }
    }
    // A running guest's netfront probes a hot-plugged vif.
    if (opts.boot) await this.startGuest(domid, devid, opts.boot.ip);
    return cfg;
  }

  /** xl network-detach NAME DEVID|MAC: libxl_device_nic_remove (force "auto"). */
  async networkDetach(qualifier: string, which: string): Promise<void> {
    const domid = await this.findDomain(qualifier);
    const devs = await this.listDevices(domid);
    let dev: DeviceRef | undefined;
    if (which.includes(":")) {
      for (const d of devs) {
        if ((await this.xs.tryRead(`${libxlPath(domid)}/device/vif/${d.devid}/mac`))?.toLowerCase() === which.toLowerCase()) dev = d;
      }
    } else if (/^\d+$/.test(which)) dev = devs.find((d) => d.devid === Number(which));
    if (!dev) throw new ToolstackError(`Unknown device ${which}.`);
    const rc = await removeNic(this.xs, dev, { force: "auto", timeoutMs: this.destroyTimeoutMs }, this.log);
    if (rc !== 0) {
      this.log("error", "libxl_device.c:device_addrm_aocomplete", domid, `Unable to remove vif with id ${dev.devid}`);
      throw new ToolstackError("libxl_device_nic_del failed.");
    }
  }

  /** xl list: every domain the hypervisor knows, named from xenstore. */
  async list(): Promise<ListedDomain[]> {
    const out: ListedDomain[] = [];
    for (const d of (await this.hv.listDomains()).sort((a, b) => a.domid - b.domid)) {
      const name = (await this.xs.tryRead(`${domainPath(d.domid)}/name`)) ?? (d.domid === TOOLSTACK_DOMID ? "Domain-0" : `(null)`);
      // Sim guests are never scheduled, so report them as blocked, as an idle PV guest shows up.
      const vcpus = (await this.domainVcpus(d.domid)) ?? d.vcpus;
      out.push({ name, domid: d.domid, memMb: Math.floor((d.memoryPages * 4096) / (1 << 20)), vcpus, state: d.domid === 0 ? "r-----" : "-b----" });
    }
    return out;
  }

  /** The vifs libxl knows for a domain: /libxl/<domid>/device/vif/<devid>/backend. */
  async listDevices(domid: number): Promise<DeviceRef[]> {
    const base = `${libxlPath(domid)}/device/vif`;
    const devids = await this.xs.directory(base).catch(() => [] as string[]);
    const out: DeviceRef[] = [];
    for (const devid of devids) {
      const be = await this.xs.tryRead(`${base}/${devid}/backend`);
      const parsed = be ? parseBackendPath(be) : undefined;
      if (parsed && parsed.domid === domid) out.push({ ...parsed, devid: Number(devid) });
    }
    return out;
  }
}

export function formatXlList(domains: ListedDomain[]): string {
  const lines = ["Name                                        ID   Mem VCPUs\tState\tTime(s)"];
  for (const d of domains) {
    lines.push(`${d.name.padEnd(40)} ${String(d.domid).padStart(5)} ${String(d.memMb).padStart(5)} ${String(d.vcpus).padStart(5)}     ${d.state}  ${(0).toFixed(1).padStart(8)}`);
  }
  return lines.join("\n");
}
