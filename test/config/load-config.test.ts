import { describe, expect, test } from "bun:test";
import { ConfigError, loadConfig, type Config, type LoadConfigInput } from "../../src/config/index.ts";

// defaultConfigFile: null, so a /etc/qnicd/qnicd.json on the machine running the tests cannot leak in.
const base = { env: {}, cpuCount: 4, uid: 1000, defaultConfigFile: null } as const;
const load = (over: Partial<LoadConfigInput> = {}) => loadConfig({ argv: [], ...base, ...over });

/** The ConfigError a call throws, so a test can check the whole one-line message. */
function errorOf(f: () => unknown): ConfigError {
  try {
    f();
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error("expected a ConfigError, nothing was thrown");
}

describe("defaults", () => {
  test("every setting has its documented default when nothing is given", () => {
    expect(load()).toEqual({
      platform: "auto",
      simDir: "/tmp/qnicd-sim-1000",
      backendType: "vif",
      domid: "auto",
      workers: 4,
      maxQueues: "auto",
      http: { host: "127.0.0.1", port: 8080 },
      httpPublic: false,
      peer: "tap",
      datapath: "batched",
      bridge: null,
      vifnamePrefix: "vif",
      onExit: "keep",
      runtimeDir: null,
      logLevel: "info",
      logFormat: "text",
      configFile: null,
    });
  });

  test("sim dir defaults under XDG_RUNTIME_DIR when it is set", () => {
    expect(load({ env: { XDG_RUNTIME_DIR: "/run/user/1000" } }).simDir).toBe("/run/user/1000/qnicd-sim");
  });

  test("workers defaults to the CPU count, clamped to 1..256", () => {
    expect(load({ cpuCount: 0 }).workers).toBe(1);
    expect(load({ cpuCount: 512 }).workers).toBe(256);
  });
});

describe("sources and precedence", () => {
  const file = JSON.stringify({ workers: 3, peer: "switch", "log-level": "warn", "http-public": true });
  const readFile = (p: string) => {
    if (p !== "/etc/qnicd.json") throw new Error(`ENOENT: no such file or directory, open '${p}'`);
    return file;
  };

  test("a flag beats env, env beats the file, the file beats the default", () => {
    const cfg = load({
      argv: ["--config", "/etc/qnicd.json", "--workers", "7"],
      env: { QNICD_WORKERS: "5", QNICD_PEER: "null" },
      readFile,
    });
    expect([cfg.workers, cfg.peer, cfg.logLevel, cfg.logFormat]).toEqual([7, "null", "warn", "text"]);
    expect(cfg.configFile).toBe("/etc/qnicd.json");
  });

  test("the config file may be named by QNICD_CONFIG", () => {
    expect(load({ env: { QNICD_CONFIG: "/etc/qnicd.json" }, readFile }).workers).toBe(3);
  });

  test("--name=VALUE and --name VALUE are the same", () => {
    expect(load({ argv: ["--domid=5"] }).domid).toBe(5);
    expect(load({ argv: ["--domid", "5"] }).domid).toBe(5);
    expect(load({ argv: ["--domid", "auto"] }).domid).toBe("auto");
  });

  test("an empty env var counts as unset", () => {
    expect(load({ env: { QNICD_BRIDGE: "" } }).bridge).toBeNull();
  });

  test("a boolean flag is given bare and may be negated with =false", () => {
    expect(load({ argv: ["--http-public"] }).httpPublic).toBe(true);
    expect(load({ argv: ["--http-public=false"], env: { QNICD_HTTP_PUBLIC: "1" } }).httpPublic).toBe(false);
  });

  test("every setting is reachable through its flag and its env var", () => {
    const argv = [
      "--platform", "sim", "--sim-dir", "/x/sim", "--backend-type", "qnic", "--domid", "32751",
      "--workers", "256", "--max-queues", "4", "--http", "[::1]:0", "--peer", "null", "--datapath", "seed", "--bridge", "xenbr0",
      "--vifname-prefix", "qn", "--on-exit", "close", "--runtime-dir", "/x/run", "--log-level", "debug", "--log-format", "json",
    ];
    const env = {
      QNICD_PLATFORM: "sim", QNICD_SIM_DIR: "/x/sim", QNICD_BACKEND_TYPE: "qnic", QNICD_DOMID: "32751",
      QNICD_WORKERS: "256", QNICD_MAX_QUEUES: "4", QNICD_HTTP: "[::1]:0", QNICD_PEER: "null", QNICD_DATAPATH: "seed", QNICD_BRIDGE: "xenbr0",
      QNICD_VIFNAME_PREFIX: "qn", QNICD_ON_EXIT: "close", QNICD_RUNTIME_DIR: "/x/run", QNICD_LOG_LEVEL: "debug", QNICD_LOG_FORMAT: "json",
    };
    const expected: Config = {
      platform: "sim", simDir: "/x/sim", backendType: "qnic", domid: 32751, workers: 256, maxQueues: 4,
      http: { host: "::1", port: 0 }, httpPublic: false, peer: "null", datapath: "seed", bridge: "xenbr0",
      vifnamePrefix: "qn", onExit: "close", runtimeDir: "/x/run", logLevel: "debug", logFormat: "json", configFile: null,
    };
    expect(load({ argv })).toEqual(expected);
    expect(load({ env })).toEqual(expected);
  });

  test("a relative sim dir is made absolute", () => {
    expect(load({ argv: ["--sim-dir", "run/sim"] }).simDir).toBe(`${process.cwd()}/run/sim`);
  });
});

describe("rejections name the setting, the value and what is allowed, on one line", () => {
  const cases: [string, Partial<LoadConfigInput>, string][] = [
    ["non-integer workers", { argv: ["--workers", "abc"] }, 'qnicd: --workers: "abc" is not valid: expected an integer from 1 to 256'],
    ["zero workers", { argv: ["--workers", "0"] }, 'qnicd: --workers: "0" is not valid: expected an integer from 1 to 256'],
    ["too many queues", { argv: ["--max-queues", "65"] }, 'qnicd: --max-queues: "65" is not valid: expected auto or an integer from 1 to 64'],
    ["fractional workers from env", { env: { QNICD_WORKERS: "1.5" } }, 'qnicd: QNICD_WORKERS: "1.5" is not valid: expected an integer from 1 to 256'],
    ["reserved domid", { argv: ["--domid", "32752"] }, 'qnicd: --domid: "32752" is not valid: expected auto or an integer from 0 to 32751'],
    ["hex domid", { argv: ["--domid", "0x10"] }, 'qnicd: --domid: "0x10" is not valid: expected auto or an integer from 0 to 32751'],
    ["unknown platform", { argv: ["--platform", "kvm"] }, 'qnicd: --platform: "kvm" is not valid: expected one of auto, xen, sim'],
    ["unknown peer", { argv: ["--peer", "macvtap"] }, 'qnicd: --peer: "macvtap" is not valid: expected one of tap, switch, null'],
    ["unknown datapath", { argv: ["--datapath", "fast"] }, 'qnicd: --datapath: "fast" is not valid: expected one of batched, seed'],
    ["unknown log level", { argv: ["--log-level", "trace"] }, 'qnicd: --log-level: "trace" is not valid: expected one of debug, info, warn, error'],
  ];
  for (const [what, input, message] of cases) {
    test(what, () => {
      const e = errorOf(() => load(input));
      expect(e.message).toBe(message);
    });
  }

  test("a bridge name breaking Linux's ifname rules", () => {
    for (const bad of ["", "a-very-long-bridge", "br/0", "br 0", "br:0", "..", "br\n0"]) {
      const e = errorOf(() => load({ argv: [`--bridge=${bad}`] }));
      expect(e.message).toBe(
        `qnicd: --bridge: ${JSON.stringify(bad)} is not valid: expected a Linux interface name: 1 to 15 characters, no '/', ':' or whitespace`,
      );
      expect(e.message).not.toContain("\n");
    }
    expect(load({ argv: ["--bridge", "br-15-chars-abc"] }).bridge).toBe("br-15-chars-abc");
  });

  test("malformed HOST:PORT", () => {
    for (const bad of ["127.0.0.1", "127.0.0.1:65536", "::1:80", "[::1:80", "[zz::1]:80", "127.1:80", "host_name:80", ":80"]) {
      const e = errorOf(() => load({ argv: ["--http", bad] }));
      expect(e.message).toStartWith(`qnicd: --http: ${JSON.stringify(bad)} is not valid: expected HOST:PORT`);
    }
  });

  test("a file value is named by its file, line, column and key", () => {
    const e = errorOf(() => load({ argv: ["--config", "/c.json"], readFile: () => '{"workers": 0}' }));
    expect(e.message).toBe('qnicd: /c.json:1:13: workers: "0" is not valid: expected an integer from 1 to 256');
  });
});

describe("the status API stays on loopback unless told otherwise", () => {
  test("loopback hosts are accepted", () => {
    for (const ok of ["127.0.0.1:1", "127.3.2.1:1", "localhost:1", "[::1]:1", "[0:0:0:0:0:0:0:1]:1", "[::ffff:127.0.0.1]:1"]) {
      expect(load({ argv: ["--http", ok] }).http.port).toBe(1);
    }
  });

  test("a non-loopback host is refused without --http-public", () => {
    const e = errorOf(() => load({ argv: ["--http", "0.0.0.0:8080"] }));
    expect(e.message).toBe(
      'qnicd: --http: "0.0.0.0:8080" is not valid: expected a loopback address (127.x.x.x, [::1] or localhost) unless --http-public is given, as the API has no authentication',
    );
    expect(() => load({ env: { QNICD_HTTP: "[::]:80" } })).toThrow(/QNICD_HTTP: "\[::\]:80" is not valid: expected a loopback address/);
  });

  test("a non-loopback host is accepted with --http-public", () => {
    expect(load({ argv: ["--http", "[2001:db8::1]:8080", "--http-public"] }).http).toEqual({ host: "2001:db8::1", port: 8080 });
    expect(load({ argv: ["--http", "metrics.example:9000"], env: { QNICD_HTTP_PUBLIC: "true" } }).http.host).toBe("metrics.example");
  });
});

describe("the command line", () => {
  test("an unknown flag is an error", () => {
    expect(errorOf(() => load({ argv: ["--wrokers", "2"] })).message).toBe("qnicd: --wrokers: unknown option (see --help for the list)");
  });

  test("a positional argument is an error", () => {
    expect(errorOf(() => load({ argv: ["sim"] })).message).toStartWith('qnicd: unexpected argument "sim"');
  });

  test("a flag missing its value says what the value should be", () => {
    expect(errorOf(() => load({ argv: ["--workers"] })).message).toBe("qnicd: --workers: a value is required: expected an integer from 1 to 256");
    expect(errorOf(() => load({ argv: ["--workers", "--peer", "null"] })).setting).toBe("workers");
  });
});

describe("the config file", () => {
  test("an unknown key is an error", () => {
    const e = errorOf(() => load({ argv: ["--config", "/c.json"], readFile: () => '{"wrokers": 2}' }));
    expect(e.message).toBe("qnicd: /c.json:1:2: wrokers: unknown setting (see --help for the list)");
  });

  test("unreadable or non-object files are one-line errors", () => {
    const missing = errorOf(() =>
      load({ argv: ["--config", "/nope.json"], readFile: () => { throw new Error("ENOENT: no such file or directory\nopen '/nope.json'"); } }),
    );
    expect(missing.message).toBe(
      'qnicd: --config: "/nope.json" is not valid: expected a readable JSON file holding an object of settings (ENOENT: no such file or directory open \'/nope.json\')',
    );
    expect(errorOf(() => load({ argv: ["--config", "/c.json"], readFile: () => "[1]" })).message).toBe(
      "qnicd: /c.json:1:1: expected a readable JSON file holding an object of settings, found an array",
    );
    expect(errorOf(() => load({ argv: ["--config", "/c.json"], readFile: () => "\n  null" })).message).toBe(
      "qnicd: /c.json:2:3: expected a readable JSON file holding an object of settings, found null",
    );
    expect(errorOf(() => load({ argv: ["--config", "/c.json"], readFile: () => "{" })).message).toBe(
      "qnicd: /c.json:1:2: not valid JSON: expected a key in double quotes, found the end of the file (the file must be a readable JSON file holding an object of settings)",
    );
  });

  test("file values of the wrong JSON type are rejected like bad text", () => {
    const e = errorOf(() => load({ argv: ["--config", "/c.json"], readFile: () => '{"peer": ["tap"]}' }));
    expect(e.message).toBe('qnicd: /c.json:1:10: peer: "[\\"tap\\"]" is not valid: expected one of tap, switch, null');
  });

  test("a real file on disk is read when no reader is injected", async () => {
    const path = `${process.env.TMPDIR ?? "/tmp"}/qnicd-config-test-${process.pid}.json`;
    await Bun.write(path, JSON.stringify({ "backend-type": "qnic" }));
    try {
      expect(loadConfig({ argv: ["--config", path], env: {} }).backendType).toBe("qnic");
    } finally {
      (await import("node:fs")).rmSync(path, { force: true });
    }
  });

  test("a syntax error names its line and column and what was expected there", () => {
    const cases: [string, string][] = [
      ['{\n  "workers": 2,\n  "peer": switch\n}\n', '/c.json:3:11: not valid JSON: expected a value, found the bare word switch: write strings in double quotes ("switch")'],
      ['{\n  "peer": tap\n}\n', '/c.json:2:11: not valid JSON: expected a value, found the bare word tap: write strings in double quotes ("tap")'],
      ['{"http-public": True}', '/c.json:1:17: not valid JSON: expected a value, found the bare word True: write strings in double quotes ("True")'],
      ['{"http-public": truex}', '/c.json:1:17: not valid JSON: expected a value, found the bare word truex'],
      ['{\n  "workers": 2,\n}\n', "/c.json:3:1: not valid JSON: a trailing comma before '}' is not JSON"],
      ['{\n  "workers": 2\n  "peer": "null"\n}', `/c.json:3:3: not valid JSON: expected ',' or '}' after the value of "workers", found '"'`],
      ["{\n\t'peer': 'null'\n}", "/c.json:2:2: not valid JSON: expected a key in double quotes, found '''"],
      ['{"sim-dir": "/tmp/a\nb"}', "/c.json:1:20: not valid JSON: control character U+000a inside a string (write it as an escape such as \\n)"],
      ['{"workers": 02}', "/c.json:1:14: not valid JSON: a number may not start with 0 (leading zeros are not JSON)"],
      ['\ufeff{"workers": 2}', "/c.json:1:1: not valid JSON: the file starts with a byte order mark: save it as UTF-8 without one"],
      ['{"workers": 2} {}', "/c.json:1:16: not valid JSON: unexpected '{' after the end of the JSON value"],
    ];
    for (const [text, where] of cases) {
      const e = errorOf(() => load({ argv: ["--config", "/c.json"], readFile: () => text }));
      expect(e.message).toStartWith(`qnicd: ${where}`);
      expect(e.message).not.toContain("\n");
    }
  });

  test("keys and values are located on their own lines in a multi-line file", () => {
    const text = '{\n  "peer": "null",\n\n    "workerz": 3\n}\n';
    expect(errorOf(() => load({ argv: ["--config", "/c.json"], readFile: () => text })).message).toBe(
      "qnicd: /c.json:4:5: workerz: unknown setting (see --help for the list)",
    );
    const bad = '{\n  "peer": "null",\n  "workers":   "many"\n}\n';
    expect(errorOf(() => load({ argv: ["--config", "/c.json"], readFile: () => bad })).message).toBe(
      'qnicd: /c.json:3:16: workers: "many" is not valid: expected an integer from 1 to 256',
    );
  });
});

describe("the default config file", () => {
  const files: Record<string, string> = { "/etc/qnicd/qnicd.json": '{"workers": 5}', "/other.json": '{"workers": 6}' };
  const fs = {
    readFile: (p: string) => {
      if (!(p in files)) throw new Error(`ENOENT: no such file or directory, open '${p}'`);
      return files[p]!;
    },
    fileExists: (p: string) => p in files,
  };

  test("/etc/qnicd/qnicd.json is read when it exists and nothing names another file", () => {
    const cfg = load({ ...fs, defaultConfigFile: undefined });
    expect(cfg.workers).toBe(5);
    expect(cfg.configFile).toBe("/etc/qnicd/qnicd.json");
  });

  test("--config and QNICD_CONFIG replace it", () => {
    expect(load({ ...fs, defaultConfigFile: undefined, argv: ["--config", "/other.json"] }).workers).toBe(6);
    expect(load({ ...fs, defaultConfigFile: undefined, env: { QNICD_CONFIG: "/other.json" } }).workers).toBe(6);
  });

  test("no file there: the defaults, no error", () => {
    const cfg = load({ readFile: fs.readFile, fileExists: () => false, defaultConfigFile: undefined });
    expect(cfg.workers).toBe(4);
    expect(cfg.configFile).toBeNull();
  });

  test("its errors carry its path, line and column like any config file", () => {
    const broken = { ...fs, readFile: () => '{\n  "peer": "bogus"\n}' };
    expect(errorOf(() => load({ ...broken, defaultConfigFile: undefined })).message).toBe(
      'qnicd: /etc/qnicd/qnicd.json:2:11: peer: "bogus" is not valid: expected one of tap, switch, null',
    );
  });
});
