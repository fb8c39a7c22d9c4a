// Runs inside a Bun Worker in dom0 (platform-check.ts): opens its own real platform from the
// serializable config, maps a grant read-only, binds to an offered port and notifies it.
import { openPlatform, type PlatformConfig } from "../../../src/platform/index.ts";

declare const self: Worker;

self.onmessage = (e: MessageEvent) => {
  const { config, gref, port } = e.data as { config: PlatformConfig; gref: number; port: number };
  try {
    const platform = openPlatform(config);
    const gnt = platform.openGrantDevice();
    const m = gnt.map(0, [gref], false);
    const bytes = Array.from(new Uint8Array(m.buffer, 0, 8));
    m.unmap();
    const ev = platform.openEventChannelDevice();
    const local = ev.bindInterdomain(0, port);
    ev.notify(local);
    platform.close();
    self.postMessage({ bytes, local });
  } catch (err) {
    self.postMessage({ error: String((err as Error).stack ?? err) });
  }
};
