// The simulated xenstored: dom0's privileged socket plus one socket per introduced guest, where
// every connection is that guest (unprivileged, relative paths under /local/domain/<domid>).
import { mkdirSync, renameSync, unlinkSync } from "node:fs";
import net from "node:net";
import { dirname } from "node:path";
import { simPaths } from "../paths.ts";
import { Connection } from "./connection.ts";
import { handleFrame, type Host } from "./handlers.ts";
import { removeOwnedBy } from "./ops.ts";
import type { Caller } from "./perms.ts";
import { DEFAULT_QUOTAS, type Quotas } from "./quotas.ts";
import { loadState, saveState, type DomainRecord } from "./state.ts";
import { initialiseTree, Store } from "./store.ts";
import { deliver } from "./watches.ts";
import { XsError } from "./errors.ts";

export type { Quotas } from "./quotas.ts";

export interface XenstoredOptions {
  /** Run directory (see simPaths). */
  dir: string;
  quotas?: Partial<Quotas>;
  log?: (line: string) => void;
}

export interface Xenstored {
  readonly socketPath: string;
  /** Closes all sockets, removes socket files, saves the tree for the next start. */
  close(): Promise<void>;
}

interface GuestDomain {
  record: DomainRecord;
  socketPath: string;
  server?: net.Server;
  ready: Promise<void>;
}

function listenUnix(path: string, onConnection: (s: net.Socket) => void): Promise<net.Server> {
  try {
    unlinkSync(path); // a stale socket from a daemon that did not shut down cleanly
  } catch {}
  return new Promise((resolve, reject) => {
    const server = net.createServer(onConnection);
    server.once("error", reject);
    server.listen(path, () => {
      server.off("error", reject);
      resolve(server);
    });
  });
}

function closeServer(server: net.Server | undefined, path: string): Promise<void> {
  try {
    unlinkSync(path);
  } catch {}
  if (!server) return Promise.resolve();
  return new Promise((resolve) => server.close(() => resolve()));
}

class Daemon implements Host, Xenstored {
  readonly store = new Store();
  readonly quotas: Quotas;
  readonly connections = new Set<Connection>();
  readonly socketPath: string;
  private readonly domains = new Map<number, GuestDomain>();
  private mainServer?: net.Server;
  private closing?: Promise<void>;

  constructor(
    private readonly opts: XenstoredOptions,
    readonly log: (line: string) => void,
  ) {
    this.quotas = { ...DEFAULT_QUOTAS, ...opts.quotas };
    this.socketPath = simPaths(opts.dir).xenstoredSocket;
    this.store.onChange = (ev) => deliver(this.store, this.connections, ev);
  }

  async start(): Promise<void> {
    const paths = simPaths(this.opts.dir);
    mkdirSync(dirname(this.socketPath), { recursive: true });
    let restored: DomainRecord[] | undefined;
    try {
      restored = loadState(paths.xenstoredState, this.store);
    } catch (e) {
      this.log(`ignoring unreadable state ${paths.xenstoredState}: ${(e as Error).message}`);
      try {
        renameSync(paths.xenstoredState, `${paths.xenstoredState}.bad`);
      } catch {}
    }
    if (restored) this.log(`restored ${this.store.size} nodes and ${restored.length} domains`);
    else initialiseTree(this.store);
    this.mainServer = await listenUnix(this.socketPath, (s) => this.accept(s, { domid: 0, privileged: true }));
    for (const d of restored ?? []) {
      try {
        await this.addDomain(d);
      } catch (e) {
        this.log(`could not restore domain ${d.domid}: ${(e as Error).message}`);
      }
    }
    this.log(`listening on ${this.socketPath}`);
  }

  private accept(socket: net.Socket, caller: Caller): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    const conn = new Connection(socket, caller, this.quotas, (c, f) => handleFrame(this, c, f), this.log, (c) => {
      this.connections.delete(c);
      this.log(`${c.label} closed`);
    });
    this.connections.add(conn);
    this.log(`${conn.label} opened`);
  }

  isIntroduced(domid: number): boolean {
    return this.domains.has(domid);
  }

  private connectionsOf(domid: number): Connection[] {
    return [...this.connections].filter((c) => !c.caller.privileged && c.caller.domid === domid);
  }

  private addDomain(record: DomainRecord): Promise<void> {
    const socketPath = simPaths(this.opts.dir).domainSocket(record.domid);
    const d: GuestDomain = { record, socketPath, ready: Promise.resolve() };
    d.ready = listenUnix(socketPath, (s) => {
      // Connections are the domain itself, for as long as it is introduced.
      if (this.domains.get(record.domid) !== d) return void s.destroy();
      this.accept(s, { domid: record.domid, privileged: false, target: d.record.target });
    }).then(
      (server) => {
        if (this.domains.get(record.domid) === d && !this.closing) d.server = server;
        else void closeServer(server, socketPath);
      },
      (e: Error) => {
        if (this.domains.get(record.domid) === d) this.domains.delete(record.domid);
        throw new XsError("EIO", `cannot listen on ${socketPath}: ${e.message}`);
      },
    );
    this.domains.set(record.domid, d);
    return d.ready;
  }

  async introduce(domid: number, mfn: string, port: number): Promise<void> {
    const existing = this.domains.get(domid);
    if (existing) {
      // Re-introduction resets the domain's connection state (xenstored domain_conn_reset).
      existing.record.mfn = mfn;
      existing.record.port = port;
      for (const c of this.connectionsOf(domid)) {
        c.watches.clear();
        c.transactions.clear();
      }
      await existing.ready;
      return;
    }
    await this.addDomain({ domid, mfn, port });
    this.log(`introduced domain ${domid}`);
    this.store.emit({ path: "@introduceDomain", exact: true });
  }

  release(domid: number): void {
    const d = this.domains.get(domid);
    if (!d) return;
    this.domains.delete(domid);
    for (const c of this.connectionsOf(domid)) {
      c.watches.clear(); // its own nodes are about to go: no events for it
      c.close();
    }
    void closeServer(d.server, d.socketPath);
    // Without --keep-orphans xenstored deletes the nodes a departed domain owns.
    const removed = removeOwnedBy(this.store, domid);
    this.log(`released domain ${domid} (${removed} owned subtrees removed)`);
    this.store.emit({ path: "@releaseDomain", exact: true });
  }

  setTarget(domid: number, target: number): void {
    const d = this.domains.get(domid);
    if (!d) return;
    d.record.target = target;
    for (const c of this.connectionsOf(domid)) c.caller.target = target;
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    const closes: Promise<void>[] = [closeServer(this.mainServer, this.socketPath)];
    for (const d of this.domains.values()) closes.push(d.ready.catch(() => {}).then(() => closeServer(d.server, d.socketPath)));
    for (const c of [...this.connections]) c.close();
    await Promise.all(closes);
    const statePath = simPaths(this.opts.dir).xenstoredState;
    try {
      saveState(
        statePath,
        this.store,
        [...this.domains.values()].map((d) => ({ ...d.record })),
      );
      this.log(`saved ${this.store.size} nodes to ${statePath}`);
    } catch (e) {
      this.log(`could not save state: ${(e as Error).message}`);
    }
  }
}

export async function startXenstored(opts: XenstoredOptions): Promise<Xenstored> {
  const daemon = new Daemon(opts, opts.log ?? (() => {}));
  await daemon.start();
  return daemon;
}
