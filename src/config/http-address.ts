// `--http HOST:PORT`: where the read-only status API listens. IPv6 hosts are written in brackets
// ("[::1]:8080") as in URLs; the parsed host is stored without them, as Bun.serve expects.
import * as v from "valibot";

export interface HttpAddress {
  host: string;
  port: number;
}

const ipv4 = v.pipe(v.string(), v.ipv4());
const ipv6 = v.pipe(v.string(), v.ipv6());
// Plain booleans: v.is() is a type guard, which would narrow a rejected string to `never`.
const isIpv4 = (s: string): boolean => v.is(ipv4, s);
const isIpv6 = (s: string): boolean => v.is(ipv6, s);

const hostnameLabel = /^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$/;

function parseHost(raw: string): string | null {
  if (raw.startsWith("[")) {
    const inner = raw.slice(1, -1);
    return raw.endsWith("]") && isIpv6(inner) ? inner.toLowerCase() : null;
  }
  if (isIpv4(raw)) return raw;
  // Anything digits-and-dots that failed the IPv4 check ("127.1", "300.0.0.1") is a typo, not a name.
  if (/^[\d.]+$/.test(raw)) return null;
  if (raw.length <= 253 && raw.split(".").every((l) => hostnameLabel.test(l))) return raw.toLowerCase();
  return null;
}

export const httpAddressSchema = v.pipe(
  v.string(),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const m = /^(.*):(\d{1,5})$/.exec(dataset.value);
    const host = m ? parseHost(m[1]) : null;
    const port = m ? Number(m[2]) : NaN;
    if (host === null || !(port >= 0 && port <= 65535)) {
      addIssue();
      return NEVER;
    }
    return { host, port } satisfies HttpAddress;
  }),
);

/**
 * Whether only this machine can reach `host`. The status API has no authentication, so binding it
 * anywhere else must be a deliberate choice (--http-public).
 */
export function isLoopbackHost(host: string): boolean {
  if (host === "localhost") return true;
  if (isIpv4(host)) return host.startsWith("127.");
  if (isIpv6(host)) {
    // The URL parser canonicalises IPv6 ("0:0:0:0:0:0:0:1" -> "::1", "::ffff:127.0.0.1" -> "::ffff:7f00:1").
    const canon = new URL(`http://[${host}]/`).hostname;
    return canon === "[::1]" || /^\[::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}\]$/.test(canon);
  }
  return false;
}

/** How the address is written back (in --help, logs and URLs). */
export function formatHttpAddress(a: HttpAddress): string {
  return a.host.includes(":") ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}
