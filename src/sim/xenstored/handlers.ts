// Request dispatch: one handler per xenstore op, in xenstored's order of checks (unknown op ->
// ENOSYS, privileged-only op from a guest -> EACCES, unknown transaction id -> ENOENT, then the
// op's own argument and permission checks). Replies echo req_id and tx_id; errors are ERROR
// "<NAME>\0".
import { XsOp, XENSTORE_PAYLOAD_MAX, type XsErrorName } from "../../xen/xs-wire.ts";
import type { Connection } from "./connection.ts";
import { handleControl } from "./control.ts";
import { fail, XsError } from "./errors.ts";
import * as ops from "./ops.ts";
import { canonicalize, domainPath } from "./path.ts";
import type { Quotas } from "./quotas.ts";
import type { Store } from "./store.ts";
import { Transaction } from "./transaction.ts";
import { atoi, joinNul, nulStrings, oneArg, type Frame } from "./wire.ts";

/** DOMID_SELF: IS_DOMAIN_INTRODUCED answers T for it. */
const DOMID_SELF = 0x7ff0;

/** What handlers need from the daemon around them. */
export interface Host {
  readonly store: Store;
  readonly quotas: Quotas;
  readonly connections: Iterable<Connection>;
  log(line: string): void;
  isIntroduced(domid: number): boolean;
  /** Introduce (or re-introduce) a guest; resolves once its socket accepts connections. */
  introduce(domid: number, mfn: string, port: number): Promise<void>;
  release(domid: number): void;
  setTarget(domid: number, target: number): void;
}

type Reply = Buffer | undefined;
interface Handler {
  fn: (host: Host, conn: Connection, frame: Frame, tx: Transaction | undefined) => Reply | Promise<Reply>;
  /** Only dom0 may use it. */
  priv?: boolean;
  /** tx_id is ignored (WATCH, UNWATCH). */
  noTx?: boolean;
}

const OK = Buffer.from("OK\0", "latin1");

function ctxFor(host: Host, conn: Connection, tx: Transaction | undefined): ops.OpContext {
  return { view: tx ?? host.store, caller: conn.caller, quotas: host.quotas };
}

function pathArg(host: Host, conn: Connection, raw: string | undefined, allowSpecial = false): string {
  return canonicalize(conn.caller, raw, allowSpecial, host.quotas.pathLength).path;
}

function domidArg(frame: Frame): number {
  const arg = oneArg(frame.payload);
  if (arg === undefined) fail("EINVAL");
  return atoi(arg) >>> 0;
}

const handlers: Partial<Record<number, Handler>> = {
  [XsOp.CONTROL]: { priv: true, fn: (host, _conn, frame) => handleControl(host, frame.payload) },

  [XsOp.DIRECTORY]: {
    fn: (host, conn, frame, tx) =>
      joinNul([...ops.directory(ctxFor(host, conn, tx), pathArg(host, conn, oneArg(frame.payload)))]),
  },

  [XsOp.DIRECTORY_PART]: {
    fn: (host, conn, frame, tx) => {
      // Exactly two strings: path and decimal byte offset into the child list.
      if (countNul(frame.payload) !== 2) fail("EINVAL");
      const [path, off] = nulStrings(frame.payload);
      return ops.directoryPart(ctxFor(host, conn, tx), pathArg(host, conn, path), atoi(off!));
    },
  },

  [XsOp.READ]: {
    fn: (host, conn, frame, tx) => ops.read(ctxFor(host, conn, tx), pathArg(host, conn, oneArg(frame.payload))),
  },

  [XsOp.GET_PERMS]: {
    fn: (host, conn, frame, tx) =>
      joinNul(ops.getPerms(ctxFor(host, conn, tx), pathArg(host, conn, oneArg(frame.payload), true))),
  },

  [XsOp.WRITE]: {
    fn: (host, conn, frame, tx) => {
      const nul = frame.payload.indexOf(0);
      if (nul < 0) fail("EINVAL");
      const path = pathArg(host, conn, frame.payload.toString("latin1", 0, nul));
      ops.write(ctxFor(host, conn, tx), path, Buffer.from(frame.payload.subarray(nul + 1)));
      return OK;
    },
  },

  [XsOp.MKDIR]: {
    fn: (host, conn, frame, tx) => {
      ops.mkdir(ctxFor(host, conn, tx), pathArg(host, conn, oneArg(frame.payload)));
      return OK;
    },
  },

  [XsOp.RM]: {
    fn: (host, conn, frame, tx) => {
      ops.rm(ctxFor(host, conn, tx), pathArg(host, conn, oneArg(frame.payload)));
      return OK;
    },
  },

  [XsOp.SET_PERMS]: {
    fn: (host, conn, frame, tx) => {
      if (countNul(frame.payload) < 2) fail("EINVAL");
      const [path, ...perms] = nulStrings(frame.payload);
      ops.setPerms(ctxFor(host, conn, tx), pathArg(host, conn, path, true), perms);
      return OK;
    },
  },

  [XsOp.WATCH]: {
    noTx: true,
    fn: (host, conn, frame) => {
      const args = nulStrings(frame.payload);
      if (args.length !== 2) fail("EINVAL");
      const [raw, token] = args as [string, string];
      const { path, prefixLen } = canonicalize(conn.caller, raw, true, host.quotas.pathLength);
      if (conn.watches.has(path, token)) fail("EEXIST");
      if (!conn.caller.privileged && conn.watches.length >= host.quotas.watchesPerConnection) fail("E2BIG");
      conn.watches.add({ path, token, prefixLen });
      conn.sendReply(XsOp.WATCH, frame.reqId, frame.txId, OK);
      // A new watch fires once straight away, with the path as the client gave it.
      conn.sendEvent(path.slice(prefixLen), token);
      return undefined;
    },
  },

  [XsOp.UNWATCH]: {
    noTx: true,
    fn: (host, conn, frame) => {
      const args = nulStrings(frame.payload);
      if (args.length !== 2) fail("EINVAL");
      const path = pathArg(host, conn, args[0], true);
      if (!conn.watches.remove(path, args[1]!)) fail("ENOENT");
      return OK;
    },
  },

  [XsOp.RESET_WATCHES]: {
    fn: (_host, conn) => {
      conn.watches.clear();
      conn.transactions.clear();
      return OK;
    },
  },

  [XsOp.TRANSACTION_START]: {
    fn: (host, conn, _frame, tx) => {
      if (tx) fail("EBUSY", "nested transaction");
      if (!conn.caller.privileged && conn.transactions.size >= host.quotas.transactionsPerConnection) {
        fail("ENOSPC", "transaction quota");
      }
      let id = conn.nextTransactionId;
      while (id === 0 || conn.transactions.has(id)) id = (id + 1) >>> 0;
      conn.nextTransactionId = (id + 1) >>> 0;
      conn.transactions.set(id, new Transaction(id, host.store, conn.caller, host.quotas));
      return Buffer.from(`${id}\0`, "latin1");
    },
  },

  [XsOp.TRANSACTION_END]: {
    fn: (_host, conn, frame, tx) => {
      const arg = oneArg(frame.payload);
      if (arg !== "T" && arg !== "F") fail("EINVAL");
      if (!tx) fail("ENOENT");
      conn.transactions.delete(tx.id);
      if (arg === "T") tx.commit();
      return OK;
    },
  },

  [XsOp.GET_DOMAIN_PATH]: {
    fn: (_host, _conn, frame) => Buffer.from(`${domainPath(domidArg(frame))}\0`, "latin1"),
  },

  [XsOp.IS_DOMAIN_INTRODUCED]: {
    priv: true,
    fn: (host, _conn, frame) => {
      const domid = domidArg(frame);
      const yes = domid === DOMID_SELF || domid === 0 || host.isIntroduced(domid);
      return Buffer.from(yes ? "T\0" : "F\0", "latin1");
    },
  },

  [XsOp.INTRODUCE]: {
    priv: true,
    fn: async (host, _conn, frame) => {
      const args = nulStrings(frame.payload);
      if (args.length < 3) fail("EINVAL");
      const domid = atoi(args[0]!);
      const port = atoi(args[2]!);
      if (port <= 0) fail("EINVAL", "bad event channel");
      // dom0 is always there, and DOMID_FIRST_RESERVED and above are not real domains.
      if (domid <= 0 || domid >= DOMID_SELF) fail("EINVAL", "bad domid");
      await host.introduce(domid, args[1]!, port);
      return OK;
    },
  },

  [XsOp.RELEASE]: {
    priv: true,
    fn: (host, _conn, frame) => {
      host.release(introducedDomainArg(host, frame));
      return OK;
    },
  },

  [XsOp.RESUME]: {
    priv: true,
    fn: (host, _conn, frame) => {
      introducedDomainArg(host, frame);
      return OK;
    },
  },

  [XsOp.SET_TARGET]: {
    priv: true,
    fn: (host, _conn, frame) => {
      const args = nulStrings(frame.payload);
      if (args.length < 2) fail("EINVAL");
      const domid = atoi(args[0]!);
      const target = atoi(args[1]!);
      if (!host.isIntroduced(domid) || !host.isIntroduced(target)) fail("ENOENT");
      host.setTarget(domid, target);
      return OK;
    },
  },
};

function introducedDomainArg(host: Host, frame: Frame): number {
  const domid = domidArg(frame);
  if (domid === 0) fail("EINVAL");
  if (!host.isIntroduced(domid)) fail("ENOENT");
  return domid;
}

function countNul(b: Buffer): number {
  let n = 0;
  for (let i = b.indexOf(0); i >= 0; i = b.indexOf(0, i + 1)) n++;
  return n;
}

function sendError(conn: Connection, frame: Frame, errno: XsErrorName): void {
  conn.sendReply(XsOp.ERROR, frame.reqId, frame.txId, Buffer.from(`${errno}\0`, "latin1"));
}

function finish(host: Host, conn: Connection, frame: Frame, reply: Reply): void {
  if (reply === undefined) return;
  if (reply.length > XENSTORE_PAYLOAD_MAX) return sendError(conn, frame, "E2BIG");
  conn.sendReply(frame.type, frame.reqId, frame.txId, reply);
}

function failed(host: Host, conn: Connection, frame: Frame, e: unknown): void {
  if (e instanceof XsError) return sendError(conn, frame, e.errno);
  // A bug here must not take the daemon (or this client) down: answer EIO and keep going.
  host.log(`${conn.label}: internal error handling op ${frame.type}: ${(e as Error)?.stack ?? e}`);
  sendError(conn, frame, "EIO");
}

export function handleFrame(host: Host, conn: Connection, frame: Frame): void | Promise<void> {
  try {
    const h = handlers[frame.type];
    if (!h) fail("ENOSYS");
    if (h.priv && !conn.caller.privileged) fail("EACCES");
    let tx: Transaction | undefined;
    if (!h.noTx && frame.txId !== 0) {
      tx = conn.transactions.get(frame.txId);
      if (!tx) fail("ENOENT", "no such transaction");
    }
    const r = h.fn(host, conn, frame, tx);
    if (r instanceof Promise) {
      return r.then(
        (reply) => finish(host, conn, frame, reply),
        (e) => failed(host, conn, frame, e),
      );
    }
    finish(host, conn, frame, r);
  } catch (e) {
    failed(host, conn, frame, e);
  }
}
