// Entry point of a pool worker thread (a Bun Worker). Its one postMessage carries WorkerInit; from
// then on it talks to the main thread only through its mailbox and eventfd, because the thread
// spends its life inside a blocking poll() and never returns to its own event loop.
import { WorkerMailbox } from "../src/pool/mailbox.ts";
import type { WorkerInit } from "../src/pool/messages.ts";
import { WorkerLoop } from "./worker-loop.ts";
import { errnoOf } from "./failure-errno.ts";

declare const self: Worker;

self.onmessage = (e: MessageEvent) => {
  self.onmessage = null;
  const init = e.data as WorkerInit;
  const mailbox = new WorkerMailbox(init.mailbox);
  let loop: WorkerLoop;
  try {
    loop = new WorkerLoop(init, mailbox);
  } catch (err) {
    mailbox.send({ op: "fatal", errno: errnoOf(err), error: `worker ${init.index}: ${(err as Error).message}` });
    return;
  }
  try {
    loop.run();
  } catch (err) {
    // The pool logs this one line; rethrowing ends the thread (its "error" and "close" events).
    mailbox.send({ op: "fatal", errno: errnoOf(err), error: `worker ${init.index}: ${(err as Error).message}` });
    throw err;
  }
};
