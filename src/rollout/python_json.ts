/**
 * JSON parsed the way Python's `json.loads` parses it, keeping what a Python program would see: integers
 * (arbitrary size) apart from floats, object keys in document order (JavaScript objects would move
 * integer-like keys first), `NaN`/`Infinity`/`-Infinity` accepted, and on failure the same message
 * (`Expecting ',' delimiter: line 1 column 9 (char 8)`) — these messages reach the model as tool results.
 */

export type PyValue = null | boolean | string | PyInt | PyFloat | PyValue[] | PyDict;

export interface PyInt {
  readonly py: "int";
  readonly value: bigint;
}
export interface PyFloat {
  readonly py: "float";
  readonly value: number;
}
export interface PyDict {
  readonly py: "dict";
  /** Insertion order as in the document; a repeated key keeps its first position and its last value. */
  readonly entries: Map<string, PyValue>;
}

export const pyInt = (value: bigint | number): PyInt => ({ py: "int", value: BigInt(value) });
export const pyFloat = (value: number): PyFloat => ({ py: "float", value });
export const pyDict = (entries: Iterable<[string, PyValue]>): PyDict => ({ py: "dict", entries: new Map(entries) });

export function isPyDict(v: PyValue): v is PyDict {
  return typeof v === "object" && v !== null && !Array.isArray(v) && v.py === "dict";
}

/** The Python type name of a value (`dict`, `list`, `str`, `int`, `float`, `bool`, `NoneType`). */
export function pyTypeName(v: PyValue): string {
  if (v === null) return "NoneType";
  if (typeof v === "boolean") return "bool";
  if (typeof v === "string") return "str";
  if (Array.isArray(v)) return "list";
  return v.py;
}

/** A `json.JSONDecodeError`: `msg` plus where, formatted as Python formats it. */
export class PyJsonError extends Error {
  constructor(readonly msg: string, readonly pos: number, readonly lineno: number, readonly colno: number) {
    super(`${msg}: line ${lineno} column ${colno} (char ${pos})`);
    this.name = "PyJsonError";
  }
}

const WS = new Set([" ", "\t", "\n", "\r"]);
const NUMBER = /^(-?(?:0|[1-9][0-9]*))(\.[0-9]+)?([eE][-+]?[0-9]+)?/;

/** Python `json.loads(text)` (strict mode, as the default). Throws PyJsonError. */
export function pyJsonLoads(text: string): PyValue {
  // Python indexes strings by code point; work on code points so positions match.
  const s = Array.from(text);
  const fail = (msg: string, pos: number): never => {
    let lineno = 1;
    let lastNl = -1;
    for (let i = 0; i < pos && i < s.length; i++) {
      if (s[i] === "\n") {
        lineno++;
        lastNl = i;
      }
    }
    throw new PyJsonError(msg, pos, lineno, pos - lastNl);
  };
  const skip = (i: number): number => {
    while (i < s.length && WS.has(s[i]!)) i++;
    return i;
  };

  const parseString = (start: number): [string, number] => {
    // s[start] is the opening quote.
    let out = "";
    let i = start + 1;
    for (;;) {
      if (i >= s.length) fail("Unterminated string starting at", start);
      const c = s[i]!;
      if (c === '"') return [out, i + 1];
      if (c === "\\") {
        i++;
        if (i >= s.length) fail("Unterminated string starting at", start);
        const e = s[i]!;
        const simple: Record<string, string> = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" };
        if (e in simple) {
          out += simple[e];
          i++;
          continue;
        }
        if (e !== "u") fail("Invalid \\escape", i - 1);
        const readHex = (at: number): number => {
          const hex = s.slice(at, at + 4).join("");
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail("Invalid \\uXXXX escape", at - 1);
          return parseInt(hex, 16);
        };
        let cp = readHex(i + 1);
        i += 5;
        if (cp >= 0xd800 && cp <= 0xdbff && s[i] === "\\" && s[i + 1] === "u") {
          const hex = s.slice(i + 2, i + 6).join("");
          if (/^[0-9a-fA-F]{4}$/.test(hex)) {
            const lo = parseInt(hex, 16);
            if (lo >= 0xdc00 && lo <= 0xdfff) {
              cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
              i += 6;
            }
          }
        }
        out += cp >= 0xd800 && cp <= 0xdfff ? String.fromCharCode(cp) : String.fromCodePoint(cp);
        continue;
      }
      if (c.codePointAt(0)! < 0x20) fail("Invalid control character at", i);
      out += c;
      i++;
    }
  };

  const parseValue = (i: number): [PyValue, number] => {
    const c = s[i];
    if (c === '"') return parseString(i);
    if (c === "{") return parseObject(i + 1);
    if (c === "[") return parseArray(i + 1);
    const rest = (n: number) => s.slice(i, i + n).join("");
    if (c === "n" && rest(4) === "null") return [null, i + 4];
    if (c === "t" && rest(4) === "true") return [true, i + 4];
    if (c === "f" && rest(5) === "false") return [false, i + 5];
    if (c === "N" && rest(3) === "NaN") return [pyFloat(NaN), i + 3];
    if (c === "I" && rest(8) === "Infinity") return [pyFloat(Infinity), i + 8];
    if (c === "-" && rest(9) === "-Infinity") return [pyFloat(-Infinity), i + 9];
    const m = NUMBER.exec(s.slice(i, i + 400).join(""));
    if (m && (c === "-" || (c !== undefined && c >= "0" && c <= "9"))) {
      const [whole, intPart, frac, exp] = m;
      const v: PyValue = frac !== undefined || exp !== undefined ? pyFloat(Number(whole)) : pyInt(BigInt(intPart!));
      return [v, i + whole.length];
    }
    return fail("Expecting value", i);
  };

  const parseObject = (i: number): [PyValue, number] => {
    const entries = new Map<string, PyValue>();
    i = skip(i);
    if (s[i] === "}") return [{ py: "dict", entries }, i + 1];
    for (;;) {
      if (s[i] !== '"') fail("Expecting property name enclosed in double quotes", i);
      const [key, afterKey] = parseString(i);
      i = skip(afterKey);
      if (s[i] !== ":") fail("Expecting ':' delimiter", i);
      i = skip(i + 1);
      const [value, afterValue] = parseValue(i);
      entries.set(key, value);
      i = skip(afterValue);
      if (s[i] === "}") return [{ py: "dict", entries }, i + 1];
      if (s[i] !== ",") fail("Expecting ',' delimiter", i);
      i = skip(i + 1);
    }
  };

  const parseArray = (i: number): [PyValue, number] => {
    const items: PyValue[] = [];
    i = skip(i);
    if (s[i] === "]") return [items, i + 1];
    for (;;) {
      const [value, after] = parseValue(i);
      items.push(value);
      i = skip(after);
      if (s[i] === "]") return [items, i + 1];
      if (s[i] !== ",") fail("Expecting ',' delimiter", i);
      i = skip(i + 1);
    }
  };

  if (s[0] === "\ufeff") fail("Unexpected UTF-8 BOM (decode using utf-8-sig)", 0);
  const [value, end] = parseValue(skip(0));
  const tail = skip(end);
  if (tail !== s.length) fail("Extra data", tail);
  return value;
}

/** A parsed value as plain JavaScript (ints become numbers, dicts objects) — for tools run natively. */
export function pyToJs(v: PyValue): unknown {
  if (v === null || typeof v === "boolean" || typeof v === "string") return v;
  if (Array.isArray(v)) return v.map(pyToJs);
  if (v.py === "int") return Number(v.value);
  if (v.py === "float") return v.value;
  return Object.fromEntries([...v.entries].map(([k, x]) => [k, pyToJs(x)]));
}
