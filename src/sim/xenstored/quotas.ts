// Per-domain and per-connection limits. Defaults and error codes follow C xenstored
// (tools/xenstored/domain.c hard_quotas); dom0 is exempt from all of them except the output
// bound, which C xenstored does not have for sockets but a simulator shared by many tests needs.
export interface Quotas {
  /** Nodes owned by one unprivileged domain (C "nodes", 1000). Exceeding: ENOSPC. */
  nodesPerDomain: number;
  /** Watches per unprivileged connection (C "watches", 128). Exceeding: E2BIG. */
  watchesPerConnection: number;
  /** Open transactions per unprivileged connection (C "transactions", 10). Exceeding: ENOSPC. */
  transactionsPerConnection: number;
  /** Nodes one unprivileged transaction may touch (C "transaction-nodes", 1024). Exceeding: ENOSPC. */
  nodesPerTransaction: number;
  /** Size of a node written by an unprivileged domain: 16 + 8 per permission + value + child
   *  names (C "node-size", 2048). Exceeding: ENOSPC. */
  nodeSize: number;
  /** Permission entries per node set by an unprivileged domain (C "node-permissions", 5): ENOSPC. */
  permsPerNode: number;
  /** Path length below /local/domain/<domid>/ for unprivileged domains (C "path-max", 2048): EINVAL. */
  pathLength: number;
  /** Bytes queued for one connection beyond what the kernel socket buffer holds. Above it, watch
   *  events for that connection are dropped and its requests are not read until it drains. */
  outputBytes: number;
  /** Watch events queued for one connection; more are dropped (xenstored drops events that do not
   *  fit a domain's memory quota). */
  pendingWatchEvents: number;
}

export const DEFAULT_QUOTAS: Readonly<Quotas> = Object.freeze({
  nodesPerDomain: 1000,
  watchesPerConnection: 128,
  transactionsPerConnection: 10,
  nodesPerTransaction: 1024,
  nodeSize: 2048,
  permsPerNode: 5,
  pathLength: 2048,
  outputBytes: 2.5 * 1024 * 1024,
  pendingWatchEvents: 4096,
});

/** Names used by CONTROL "quota" (C xenstored's names where one exists). */
export const QUOTA_NAMES: Record<keyof Quotas, string> = {
  nodesPerDomain: "nodes",
  watchesPerConnection: "watches",
  transactionsPerConnection: "transactions",
  nodesPerTransaction: "transaction-nodes",
  nodeSize: "node-size",
  permsPerNode: "node-permissions",
  pathLength: "path-max",
  outputBytes: "output-bytes",
  pendingWatchEvents: "watch-events",
};
