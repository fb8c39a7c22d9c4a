import { expect, test } from "bun:test";
import { helpText, isHelpRequested } from "../../src/config/index.ts";

test("--help lists every setting with its default and env var", () => {
  const text = helpText();
  const expectations: [string, string, string][] = [
    ["--config FILE", "default /etc/qnicd/qnicd.json when it exists", "QNICD_CONFIG"],
    ["--platform auto|xen|sim", "default auto", "QNICD_PLATFORM"],
    ["--sim-dir DIR", "default $XDG_RUNTIME_DIR/qnicd-sim, else /tmp/qnicd-sim-<uid>", "QNICD_SIM_DIR"],
    ["--backend-type vif|qnic", "default vif", "QNICD_BACKEND_TYPE"],
    ["--domid N|auto", "default auto", "QNICD_DOMID"],
    ["--workers N", "default the number of CPUs", "QNICD_WORKERS"],
    ["--http HOST:PORT", "default 127.0.0.1:8080", "QNICD_HTTP"],
    ["--http-public", "default false", "QNICD_HTTP_PUBLIC"],
    ["--peer tap|switch|null", "default tap", "QNICD_PEER"],
    ["--datapath batched|seed", "default batched", "QNICD_DATAPATH"],
    ["--bridge NAME", "default none", "QNICD_BRIDGE"],
    ["--vifname-prefix PREFIX", "default vif", "QNICD_VIFNAME_PREFIX"],
    ["--log-level LEVEL", "default info", "QNICD_LOG_LEVEL"],
    ["--log-format text|json", "default text", "QNICD_LOG_FORMAT"],
  ];
  for (const [usage, dflt, env] of expectations) {
    // An entry is three lines: usage, description, then "<allowed>; default <d>; env <VAR>".
    const lines = text.split("\n");
    const at = lines.indexOf(`  ${usage}`);
    expect(at, usage).toBeGreaterThan(-1);
    expect(lines[at + 2]).toContain(`${dflt}; env ${env}`);
  }
});

test("--help and -h are recognised wherever they appear", () => {
  expect(isHelpRequested(["--workers", "abc", "--help"])).toBe(true);
  expect(isHelpRequested(["-h"])).toBe(true);
  expect(isHelpRequested(["--workers", "2"])).toBe(false);
});
