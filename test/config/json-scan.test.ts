// The scanner that locates config-file errors accepts exactly what JSON.parse accepts: checked on
// hand-picked texts and on thousands of seeded random edits of a real settings file.
import { expect, test } from "bun:test";
import { lineColumn, scanJson } from "../../src/config/json-scan.ts";

const parses = (t: string) => {
  try {
    JSON.parse(t);
    return true;
  } catch {
    return false;
  }
};

const SAMPLE = `{
  "platform": "sim",
  "workers": 4,
  "http": "127.0.0.1:8080",
  "http-public": false,
  "bridge": null,
  "extra": [1, -2.5e+3, 0.25, "a\\"b\\\\c\\u00e9\\n", {"x": [true, false, null]}]
}
`;

test("hand-picked texts: valid and invalid agree with JSON.parse", () => {
  const texts = [
    "{}", "[]", "0", "-0", "1e5", "1E-5", "-1.5", '""', '"\\/"', " \t\r\n{} ", "[[[[]]]]", '{"a":{"b":{"c":[]}}}',
    "", " ", "{", "}", "[1,]", "{,}", "01", "1.", ".5", "+1", "1e", "-", "tru", "nul", "NaN", "Infinity", "'a'", '"\\x"',
    '"\\u12"', '"abc', '{"a" 1}', '{"a":}', "[1 2]", "{} x", '{"a":1,,"b":2}', "\u00a0{}", '"\t"',
  ];
  for (const t of texts) expect({ t, ok: scanJson(t).error === null }).toEqual({ t, ok: parses(t) });
});

test("random edits of a settings file: the scanner and JSON.parse agree on every one", () => {
  let seed = 0x9e3779b9;
  const rand = (n: number) => {
    seed = (Math.imul(seed ^ (seed >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
    return seed % n;
  };
  const alphabet = ['"', "{", "}", "[", "]", ",", ":", " ", "\n", "\\", "0", "1", "-", ".", "e", "t", "n", "u", "a", "\u0001"];
  let valid = 0;
  for (let k = 0; k < 5000; k++) {
    let t = SAMPLE;
    for (let e = 1 + rand(3); e > 0; e--) {
      const at = rand(t.length + 1);
      const op = rand(3);
      if (op === 0) t = t.slice(0, at) + t.slice(at + 1);
      else if (op === 1) t = t.slice(0, at) + alphabet[rand(alphabet.length)] + t.slice(at);
      else t = t.slice(0, at) + alphabet[rand(alphabet.length)] + t.slice(at + 1);
    }
    const scan = scanJson(t);
    const ok = parses(t);
    if (ok) valid++;
    expect({ t, ok: scan.error === null }).toEqual({ t, ok });
    if (scan.error) expect(scan.error.offset).toBeLessThanOrEqual(t.length);
  }
  // Enough of both kinds to mean something.
  expect(valid).toBeGreaterThan(100);
  expect(valid).toBeLessThan(4900);
});

test("top-level members: each key's and value's position; the last duplicate wins, as in JSON.parse", () => {
  const t = '{\n  "a": 1,\n  "b": {"a": 2},\n  "a": "x"\n}';
  const m = scanJson(t).members;
  expect([...m.keys()]).toEqual(["b", "a"]);
  expect(lineColumn(t, m.get("a")!.key)).toEqual({ line: 4, column: 3 });
  expect(lineColumn(t, m.get("a")!.value)).toEqual({ line: 4, column: 8 });
  expect(lineColumn(t, m.get("b")!.value)).toEqual({ line: 3, column: 8 });
  expect(Object.keys(JSON.parse(t))).toEqual(["a", "b"]); // JSON.parse keeps the first key's place
});

test("deep nesting is an error at a bounded depth, not a stack overflow", () => {
  const t = "[".repeat(100_000) + "]".repeat(100_000);
  const r = scanJson(t);
  expect(r.error?.message).toBe("nested deeper than 256 levels");
  expect(r.error?.offset).toBe(257);
});
