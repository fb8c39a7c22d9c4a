// xl's vif `rate=RATE[@INTERVAL]` as libxl parses it (tools/libs/util/libxlu_vif.c,
// xlu_vif_parse_rate; its cases in tools/xl/check-xl-vif-parse), so the sim's xl writes exactly the
// B/rate node libxl would ("bytes,usecs", tools/libs/light/libxl_nic.c: only when an interval is set,
// which xl always does).
//
// RATE matches ^[0-9]+[GMK]?[Bb]/s$: the number (read by strtoull with base 0, so a leading 0 means
// octal and stops at the first 8 or 9), 0 or over UINT32_MAX refused, then times 10^9 / 10^6 / 10^3
// for G / M / K, divided by 8 when the unit is bits (b). INTERVAL matches ^[0-9]+[mu]?s?$ and
// defaults to 50 ms: a bare number or "s" is seconds, "m..." milliseconds, "u..." microseconds;
// 0 or over UINT32_MAX microseconds refused. bytes per interval = bytes/s x usecs / 10^6 (u64, the
// product checked first). All in BigInt: the u64 arithmetic must be exact.

const UINT32_MAX = 0xffffffffn;
const UINT64_MAX = 0xffffffffffffffffn;
const DEFAULT_INTERVAL_USECS = 50_000n;

/** What libxl stores in libxl_device_nic (rate_bytes_per_interval, rate_interval_usecs). */
export interface LibxlRate {
  bytesPerInterval: bigint;
  intervalUsecs: number;
}

/** xlu__vif_err's line: "config parsing error in vif: <what> in `<value>'". */
export class VifRateError extends Error {
  override name = "VifRateError";
  constructor(what: string, value: string) {
    super(`config parsing error in vif: ${what} in \`${value}'`);
  }
}

/** strtoull(s, &end, 0) over a string of decimal digits (the regexes allow nothing else): value and where it stopped. */
function strtoull0(s: string): { value: bigint; end: number } {
  let i = 0;
  let base = 10n;
  if (s[0] === "0") base = 8n; // "0x" cannot occur: the regexes admit digits first
  let v = 0n;
  for (; i < s.length; i++) {
    const d = s.charCodeAt(i) - 48;
    if (d < 0 || d > 9 || (base === 8n && d > 7)) break;
    v = v * base + BigInt(d);
  }
  // strtoull saturates at ULLONG_MAX with ERANGE: libxl then reports an overflow, as for > UINT32_MAX.
  return { value: v > UINT64_MAX ? UINT64_MAX : v, end: i };
}

function bytesPerSecond(rate: string): bigint {
  if (!/^[0-9]+[GMK]?[Bb]\/s$/.test(rate)) throw new VifRateError("invalid rate", rate);
  const { value, end } = strtoull0(rate);
  if (value === 0n || value > UINT32_MAX) throw new VifRateError("rate overflow", rate);
  let v = value;
  const p = rate[end];
  if (p === "G") v *= 1_000_000_000n;
  else if (p === "M") v *= 1_000_000n;
  else if (p === "K") v *= 1_000n;
  if (p === "b" || rate[end + 1] === "b") v /= 8n;
  return v;
}

function intervalUsecs(interval: string): bigint {
  if (!/^[0-9]+[mu]?s?$/.test(interval)) throw new VifRateError("invalid replenishment interval", interval);
  const { value, end } = strtoull0(interval);
  if (value === 0n || value > UINT32_MAX) throw new VifRateError("replenishment interval overflow", interval);
  let v = value;
  const p = interval[end];
  if (p === "s" || p === undefined) v *= 1_000_000n;
  else if (p === "m") v *= 1_000n;
  if (v > UINT32_MAX) throw new VifRateError("replenishment interval overflow", interval);
  return v;
}

/** xlu_vif_parse_rate: throws VifRateError with libxl's words for anything libxl refuses. */
export function parseVifRate(rate: string): LibxlRate {
  const at = rate.indexOf("@");
  const r = at < 0 ? rate : rate.slice(0, at);
  if (r === "") throw new VifRateError("no rate specified", rate);
  const bps = bytesPerSecond(r);
  const usecs = at < 0 ? DEFAULT_INTERVAL_USECS : intervalUsecs(rate.slice(at + 1));
  if (bps > UINT64_MAX / usecs) throw new VifRateError("rate overflow", rate);
  return { bytesPerInterval: (bps * usecs) / 1_000_000n, intervalUsecs: Number(usecs) };
}

/** The B/rate value libxl writes for it: "%PRIu64,%PRIu32". */
export function rateNode(r: LibxlRate): string {
  return `${r.bytesPerInterval},${r.intervalUsecs}`;
}
