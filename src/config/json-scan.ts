// Where a JSON text goes wrong, and where its top-level keys are: JSON.parse says neither (Bun's
// "JSON Parse error: Unexpected identifier" has no position), and an operator editing
// /etc/qnicd/qnicd.json wants file:line:column. A strict RFC 8259 scanner; it builds no values
// (JSON.parse does that once the text is known to be valid).

export interface JsonMember {
  /** Offsets (UTF-16 indexes into the text) of the key's opening quote and of the value. */
  key: number;
  value: number;
}

export interface JsonScan {
  /** The first syntax error, or null when the whole text is one valid JSON value. */
  error: { offset: number; message: string } | null;
  /** The top-level object's keys (the last of duplicates, as JSON.parse keeps), when it is one. */
  members: Map<string, JsonMember>;
}

/** 1-based line and column of `offset`; a column counts characters, a tab being one. */
export function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let start = 0;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 0x0a) {
      line++;
      start = i + 1;
    }
  }
  return { line, column: offset - start + 1 };
}

/** Deeper nesting than any settings file needs; bounds the recursion on a hostile file. */
const MAX_DEPTH = 256;

class SyntaxFault {
  constructor(
    readonly offset: number,
    readonly message: string,
  ) {}
}

export function scanJson(text: string): JsonScan {
  const members = new Map<string, JsonMember>();
  let i = 0;

  const fail = (message: string, at = i): never => {
    throw new SyntaxFault(at, message);
  };
  const describe = (at: number): string => {
    if (at >= text.length) return "the end of the file";
    const c = text[at]!;
    const code = c.charCodeAt(0);
    return code < 0x20 || code === 0x7f ? `control character U+${code.toString(16).padStart(4, "0")}` : `'${c}'`;
  };
  const ws = () => {
    for (;;) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) i++;
      else return;
    }
  };
  // An unquoted word where a value belongs (`"peer": tap`) is the usual slip in a settings file.
  const bareWord = (): never => {
    const word = /^[A-Za-z_][A-Za-z0-9_.-]*/.exec(text.slice(i, i + 64))![0];
    return fail(`expected a value, found the bare word ${word}: write strings in double quotes ("${word}")`);
  };
  const literal = (word: string) => {
    if (text.startsWith(word, i) && !/[A-Za-z0-9_]/.test(text[i + word.length] ?? "")) i += word.length;
    else bareWord();
  };
  const digits = (what: string) => {
    const from = i;
    while (i < text.length && text.charCodeAt(i) >= 0x30 && text.charCodeAt(i) <= 0x39) i++;
    if (i === from) fail(`expected a digit ${what}, found ${describe(i)}`);
  };
  const number = () => {
    if (text[i] === "-") i++;
    if (text[i] === "0") {
      i++;
      if (/[0-9]/.test(text[i] ?? "")) fail("a number may not start with 0 (leading zeros are not JSON)");
    } else digits("in the number");
    if (text[i] === ".") {
      i++;
      digits("after the decimal point");
    }
    if (text[i] === "e" || text[i] === "E") {
      i++;
      if (text[i] === "+" || text[i] === "-") i++;
      digits("in the exponent");
    }
  };
  const string = (): string => {
    const open = i;
    i++; // the opening quote
    let out = "";
    for (;;) {
      if (i >= text.length) fail("the string is not closed: a '\"' is missing", open);
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return out;
      }
      if (c < 0x20) fail(`${describe(i)} inside a string (write it as an escape such as \\n)`);
      if (c !== 0x5c) {
        out += text[i++];
        continue;
      }
      const e = text[i + 1];
      if (e === undefined) fail("the string is not closed: a '\"' is missing", open);
      const simple: Record<string, string> = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" };
      if (e! in simple) {
        out += simple[e!];
        i += 2;
      } else if (e === "u") {
        const hex = text.slice(i + 2, i + 6);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail("\\u must be followed by four hex digits");
        out += String.fromCharCode(Number.parseInt(hex, 16));
        i += 6;
      } else fail(`unknown escape '\\${e}' in a string`);
    }
  };
  const value = (depth: number) => {
    if (depth > MAX_DEPTH) fail(`nested deeper than ${MAX_DEPTH} levels`);
    ws();
    const c = text[i];
    if (c === "{") object(depth);
    else if (c === "[") array(depth);
    else if (c === '"') string();
    else if (c === "t") literal("true");
    else if (c === "f") literal("false");
    else if (c === "n") literal("null");
    else if (c === "-" || (c !== undefined && c >= "0" && c <= "9")) number();
    else if (c === "'") fail("strings are written with double quotes in JSON");
    else if (c !== undefined && /[A-Za-z_]/.test(c)) bareWord();
    else fail(`expected a value, found ${describe(i)}`);
  };
  const object = (depth: number) => {
    i++;
    ws();
    if (text[i] === "}") {
      i++;
      return;
    }
    for (;;) {
      ws();
      if (text[i] !== '"') fail(text[i] === "}" ? "a trailing comma before '}' is not JSON" : `expected a key in double quotes, found ${describe(i)}`);
      const keyAt = i;
      const key = string();
      ws();
      if (text[i] !== ":") fail(`expected ':' after the key "${key}", found ${describe(i)}`);
      i++;
      ws();
      const valueAt = i;
      value(depth + 1);
      if (depth === 0) {
        members.delete(key); // re-inserted: the order is the last occurrence's, like JSON.parse
        members.set(key, { key: keyAt, value: valueAt });
      }
      ws();
      if (text[i] === ",") {
        i++;
        continue;
      }
      if (text[i] === "}") {
        i++;
        return;
      }
      fail(`expected ',' or '}' after the value of "${key}", found ${describe(i)}`);
    }
  };
  const array = (depth: number) => {
    i++;
    ws();
    if (text[i] === "]") {
      i++;
      return;
    }
    for (;;) {
      ws();
      if (text[i] === "]") fail("a trailing comma before ']' is not JSON");
      value(depth + 1);
      ws();
      if (text[i] === ",") {
        i++;
        continue;
      }
      if (text[i] === "]") {
        i++;
        return;
      }
      fail(`expected ',' or ']' after an array element, found ${describe(i)}`);
    }
  };

  try {
    if (text.charCodeAt(0) === 0xfeff) fail("the file starts with a byte order mark: save it as UTF-8 without one");
    value(0);
    ws();
    if (i < text.length) fail(`unexpected ${describe(i)} after the end of the JSON value`);
    return { error: null, members };
  } catch (e) {
    if (e instanceof SyntaxFault) return { error: { offset: e.offset, message: e.message }, members: new Map() };
    throw e;
  }
}
