// /metrics: the Prometheus text exposition format, version 0.0.4 (prometheus.io, "Exposition
// formats"): UTF-8, one `# HELP` and one `# TYPE` line per family before its samples, names
// [a-zA-Z_:][a-zA-Z0-9_:]*, label values with `\`, `"` and newlines escaped, `\n` line ends.
//
// Rendered from one snapshot per scrape (the daemon's vif list, then each vif's counters read once
// from shared memory), so the families of one scrape agree with each other. Per-vif families carry
// numeric `domid` and `devid` labels (what a query joins on) plus `vif`, netback's interface name.
// Counters follow the counter table (src/stats/counter-table.ts): a row is a `_total` counter or a
// gauge; rows that share a `family` become one family told apart by the row's labels.
import { VIF_COUNTERS } from "../stats/index.ts";
import { XenbusState, xenbusStateName } from "../xen/xenbus-state.ts";
import type { BuildInfo } from "../build-info.ts";
import type { HealthSnapshot, VifView } from "./views.ts";

export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

export interface MetricsInput {
  health: HealthSnapshot;
  vifs: readonly VifView[];
  build: BuildInfo;
}

type Labels = Record<string, string | number>;

interface Family {
  name: string;
  type: "counter" | "gauge";
  help: string;
  samples: { labels: Labels; value: number }[];
}

export function renderMetrics(input: MetricsInput): string {
  const families: Family[] = [];
  const add = (name: string, type: Family["type"], help: string): Family => {
    const f: Family = { name, type, help, samples: [] };
    families.push(f);
    return f;
  };
  const { health, vifs, build } = input;

  add("qnicd_build_info", "gauge", "always 1: the running qnicd's version and git commit (empty when not built from a checkout)").samples.push({
    labels: { version: build.version, commit: build.commit ?? "" },
    value: 1,
  });
  add("qnicd_uptime_seconds", "gauge", "seconds since the daemon started").samples.push({ labels: {}, value: health.uptimeSeconds });
  add("qnicd_workers_configured", "gauge", "worker threads the daemon was started with (--workers)").samples.push({ labels: {}, value: health.workers.configured });
  add("qnicd_workers_running", "gauge", "worker threads alive right now (a dead worker's vifs move to the others)").samples.push({ labels: {}, value: health.workers.running });
  const xs = add("qnicd_xenstore_connection", "gauge", "1 for the state the daemon's xenstore connection is in, 0 for the others");
  for (const state of ["connected", "reconnecting", "down"] as const) xs.samples.push({ labels: { state }, value: health.xenstore === state ? 1 : 0 });

  const byState = add("qnicd_vifs", "gauge", "vifs the daemon knows, by the backend's xenbus state");
  for (let n = XenbusState.Unknown; n <= XenbusState.Reconfigured; n++) {
    byState.samples.push({ labels: { state: xenbusStateName(n) }, value: vifs.filter((v) => v.backendState.number === n).length });
  }

  const info = add("qnicd_vif_info", "gauge", "always 1 per vif: its MAC, host side and worker (labels), for joins on domid and devid");
  const be = add("qnicd_vif_backend_state", "gauge", "the vif's backend xenbus state number (4 = Connected)");
  const fe = add("qnicd_vif_frontend_state", "gauge", "the vif's frontend xenbus state number (4 = Connected)");
  for (const v of vifs) {
    const id = vifLabels(v);
    info.samples.push({
      labels: { ...id, mac: v.mac ?? "", peer: v.hostSide?.kind ?? "", host_interface: v.hostSide?.name ?? "", worker: v.worker ?? "" },
      value: 1,
    });
    be.samples.push({ labels: id, value: v.backendState.number });
    fe.samples.push({ labels: id, value: v.frontendState.number });
  }

  // One family per counter-table row, or per shared `family`; samples only for vifs with counters.
  const counted = vifs.filter((v) => v.counters !== null);
  const tableFamilies = new Map<string, Family>();
  for (const row of VIF_COUNTERS) {
    const r = row as { name: string; kind: "counter" | "gauge"; help: string; family?: string; familyHelp?: string; labels?: Labels };
    const base = `qnicd_vif_${r.family ?? r.name}`;
    const name = r.kind === "counter" ? `${base}_total` : base;
    let f = tableFamilies.get(name);
    if (!f) {
      const help = r.family ? (r.familyHelp ?? r.help) : r.help;
      f = add(name, r.kind, /^(tx|rx)_/.test(r.family ?? r.name) ? `${help}; ${DIRECTION}` : help);
      tableFamilies.set(name, f);
    }
    for (const v of counted) f.samples.push({ labels: { ...vifLabels(v), ...r.labels }, value: v.counters![r.name as keyof typeof v.counters] });
  }

  return families.map(renderFamily).join("");
}

/** Said in every per-vif counter's HELP: the opposite of `ip -s link` on a Linux netback vif. */
const DIRECTION = "tx/rx from the guest's side (tx = sent by the guest)";

function vifLabels(v: VifView): Labels {
  return { vif: v.name, domid: v.domid, devid: v.devid };
}

function renderFamily(f: Family): string {
  let out = `# HELP ${f.name} ${escapeHelp(f.help)}\n# TYPE ${f.name} ${f.type}\n`;
  for (const s of f.samples) out += `${f.name}${renderLabels(s.labels)} ${formatValue(s.value)}\n`;
  return out;
}

function renderLabels(labels: Labels): string {
  const keys = Object.keys(labels);
  if (keys.length === 0) return "";
  return `{${keys.map((k) => `${k}="${escapeLabelValue(String(labels[k]))}"`).join(",")}}`;
}

/** Label values escape backslash, double quote and line feed (exposition format 0.0.4). */
export function escapeLabelValue(s: string): string {
  return s.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** HELP text escapes backslash and line feed only. */
function escapeHelp(s: string): string {
  return s.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

function formatValue(n: number): string {
  if (Number.isNaN(n)) return "NaN";
  if (n === Infinity) return "+Inf";
  if (n === -Infinity) return "-Inf";
  return String(n);
}
