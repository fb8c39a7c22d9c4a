// The status API's port: 8080 (qnicd's default) when it is free, else any free one, so the demo
// runs beside whatever already listens on 8080 and still prints a URL that works.
import { createServer } from "node:net";

function listenOnce(port: number): Promise<number | undefined> {
  return new Promise((res) => {
    const s = createServer();
    s.once("error", () => res(undefined));
    s.listen({ host: "127.0.0.1", port, exclusive: true }, () => {
      const got = (s.address() as { port: number }).port;
      s.close(() => res(got));
    });
  });
}

export async function pickHttpPort(preferred = 8080): Promise<number> {
  const p = (await listenOnce(preferred)) ?? (await listenOnce(0));
  if (p === undefined) throw new Error(`demo: cannot find a free TCP port on 127.0.0.1 for the status API`);
  return p;
}
