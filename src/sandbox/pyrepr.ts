/**
 * Python's `str()` of a JSON value, as ReCall's client prints a decoded `/execute` answer:
 * `f"result: \n{response['result']}\n"` after `requests.Response.json()`. Strings print bare at the
 * top level and as `repr` inside containers, dicts as `{'k': v}`, `true` as `True`, `null` as `None`,
 * JSON numbers with a fraction or exponent as Python floats (`2.0`, `1e+16`), others as ints.
 *
 * Two entry points: from JSON *text* (exact: keeps `2.0` apart from `2`, big ints, key order) and
 * from a JS value (what is left when only a parsed value is at hand).
 */

/** A decoded JSON value with the distinctions Python keeps and JS loses. */
export type PyValue =
  | { kind: "none" }
  | { kind: "bool"; value: boolean }
  | { kind: "int"; digits: string }
  | { kind: "float"; value: number }
  | { kind: "str"; value: string }
  | { kind: "list"; items: PyValue[] }
  | { kind: "dict"; entries: Map<string, PyValue> };

const NON_PRINTABLE = /^[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Zs}]$/u;

function hex(n: number, width: number): string {
  return n.toString(16).padStart(width, "0");
}

/** Python's `repr(s)` for a str. */
export function pyReprString(s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === quote || ch === "\\") out += "\\" + ch;
    else if (ch === "\t") out += "\\t";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (c < 0x20 || c === 0x7f) out += "\\x" + hex(c, 2);
    else if (c < 0x7f) out += ch;
    else if (c !== 0x20 && NON_PRINTABLE.test(ch)) {
      out += c <= 0xff ? "\\x" + hex(c, 2) : c <= 0xffff ? "\\u" + hex(c, 4) : "\\U" + hex(c, 8);
    } else out += ch;
  }
  return out + quote;
}

/** Python's `repr(x)` for a float: shortest round-trip digits, scientific outside 1e-4 ≤ |x| < 1e16. */
export function pyFloatRepr(x: number): string {
  if (Number.isNaN(x)) return "nan";
  if (x === Infinity) return "inf";
  if (x === -Infinity) return "-inf";
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const sign = x < 0 ? "-" : "";
  const [mant, expText] = Math.abs(x).toExponential().split("e") as [string, string];
  const digits = mant.replace(".", "");
  const exp = Number(expText);
  if (exp < -4 || exp >= 16) {
    const m = digits.length > 1 ? digits[0] + "." + digits.slice(1) : digits;
    return `${sign}${m}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
  }
  if (exp < 0) return `${sign}0.${"0".repeat(-exp - 1)}${digits}`;
  const intPart = digits.slice(0, exp + 1).padEnd(exp + 1, "0");
  const frac = digits.slice(exp + 1);
  return `${sign}${intPart}.${frac || "0"}`;
}

/** `repr()` of a decoded value (what Python prints for a value inside a list or dict). */
export function pyRepr(v: PyValue): string {
  switch (v.kind) {
    case "none":
      return "None";
    case "bool":
      return v.value ? "True" : "False";
    case "int":
      return v.digits;
    case "float":
      return pyFloatRepr(v.value);
    case "str":
      return pyReprString(v.value);
    case "list":
      return "[" + v.items.map(pyRepr).join(", ") + "]";
    case "dict":
      return "{" + [...v.entries].map(([k, x]) => `${pyReprString(k)}: ${pyRepr(x)}`).join(", ") + "}";
  }
}

/** `str()` of a decoded value: like repr, except a top-level string prints bare. */
export function pyStr(v: PyValue): string {
  return v.kind === "str" ? v.value : pyRepr(v);
}

/** Python truthiness: None, False, 0, 0.0, '', [] and {} are false. */
export function pyTruthy(v: PyValue): boolean {
  switch (v.kind) {
    case "none":
      return false;
    case "bool":
      return v.value;
    case "int":
      return v.digits !== "0";
    case "float":
      return v.value !== 0;
    case "str":
      return v.value.length > 0;
    case "list":
      return v.items.length > 0;
    case "dict":
      return v.entries.size > 0;
  }
}

/**
 * A JSON parser that keeps what Python's `json.loads` keeps: int vs float, arbitrary-size ints,
 * member order, last-duplicate-wins in first position; it also accepts Python's `NaN`,
 * `Infinity` and `-Infinity`. `spans` records, for the top-level object, where each member's value
 * text starts and ends (so a client can pass a server's `result` on verbatim).
 */
export class JsonScanner {
  private pos = 0;
  readonly spans = new Map<string, [number, number]>();
  constructor(private readonly text: string) {}

  static parse(text: string): PyValue {
    const s = new JsonScanner(text);
    const v = s.value(0);
    s.ws();
    if (s.pos !== text.length) s.fail("extra data");
    return v;
  }

  private fail(what: string): never {
    throw new SyntaxError(`invalid JSON at offset ${this.pos}: ${what}`);
  }

  private ws(): void {
    const t = this.text;
    while (this.pos < t.length) {
      const c = t.charCodeAt(this.pos);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) this.pos++;
      else break;
    }
  }

  value(depth: number): PyValue {
    if (depth > 10000) this.fail("nesting too deep");
    this.ws();
    const t = this.text;
    const c = t[this.pos];
    if (c === "{") return this.object(depth);
    if (c === "[") return this.array(depth);
    if (c === '"') return { kind: "str", value: this.string() };
    if (t.startsWith("true", this.pos)) return (this.pos += 4), { kind: "bool", value: true };
    if (t.startsWith("false", this.pos)) return (this.pos += 5), { kind: "bool", value: false };
    if (t.startsWith("null", this.pos)) return (this.pos += 4), { kind: "none" };
    if (t.startsWith("NaN", this.pos)) return (this.pos += 3), { kind: "float", value: NaN };
    if (t.startsWith("Infinity", this.pos)) return (this.pos += 8), { kind: "float", value: Infinity };
    if (t.startsWith("-Infinity", this.pos)) return (this.pos += 9), { kind: "float", value: -Infinity };
    return this.number();
  }

  private number(): PyValue {
    const m = /-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;
    m.lastIndex = this.pos;
    const hit = m.exec(this.text);
    if (!hit || hit[0] === "-" || hit[0].length === 0) this.fail("unexpected character");
    this.pos += hit[0].length;
    if (hit[1] !== undefined || hit[2] !== undefined) return { kind: "float", value: Number(hit[0]) };
    return { kind: "int", digits: BigInt(hit[0]).toString() };
  }

  private string(): string {
    const t = this.text;
    this.pos++; // opening quote
    let out = "";
    let start = this.pos;
    for (;;) {
      if (this.pos >= t.length) this.fail("unterminated string");
      const c = t.charCodeAt(this.pos);
      if (c === 0x22) {
        out += t.slice(start, this.pos);
        this.pos++;
        return out;
      }
      if (c === 0x5c) {
        out += t.slice(start, this.pos);
        const e = t[this.pos + 1];
        const simple: Record<string, string> = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" };
        if (e !== undefined && e in simple) {
          out += simple[e];
          this.pos += 2;
        } else if (e === "u") {
          const h = t.slice(this.pos + 2, this.pos + 6);
          if (!/^[0-9a-fA-F]{4}$/.test(h)) this.fail("bad \\u escape");
          out += String.fromCharCode(parseInt(h, 16));
          this.pos += 6;
        } else this.fail("bad escape");
        start = this.pos;
        continue;
      }
      this.pos++;
    }
  }

  private array(depth: number): PyValue {
    this.pos++;
    const items: PyValue[] = [];
    this.ws();
    if (this.text[this.pos] === "]") return this.pos++, { kind: "list", items };
    for (;;) {
      items.push(this.value(depth + 1));
      this.ws();
      const c = this.text[this.pos++];
      if (c === "]") return { kind: "list", items };
      if (c !== ",") this.fail("expected ',' or ']'");
    }
  }

  private object(depth: number): PyValue {
    this.pos++;
    const entries = new Map<string, PyValue>();
    this.ws();
    if (this.text[this.pos] === "}") return this.pos++, { kind: "dict", entries };
    for (;;) {
      this.ws();
      if (this.text[this.pos] !== '"') this.fail("expected a string key");
      const key = this.string();
      this.ws();
      if (this.text[this.pos++] !== ":") this.fail("expected ':'");
      this.ws();
      const start = this.pos;
      entries.set(key, this.value(depth + 1));
      if (depth === 0) this.spans.set(key, [start, this.pos]);
      this.ws();
      const c = this.text[this.pos++];
      if (c === "}") return { kind: "dict", entries };
      if (c !== ",") this.fail("expected ',' or '}'");
    }
  }
}

/** The decoded form of a JS value, for answers that carry no JSON text (ints and floats are told apart by Number.isInteger). */
export function fromJsValue(v: unknown, seen: Set<object> = new Set()): PyValue {
  if (v === null || v === undefined) return { kind: "none" };
  if (typeof v === "boolean") return { kind: "bool", value: v };
  if (typeof v === "bigint") return { kind: "int", digits: v.toString() };
  if (typeof v === "number") {
    return Number.isInteger(v) && !Object.is(v, -0) ? { kind: "int", digits: BigInt(v).toString() } : { kind: "float", value: v };
  }
  if (typeof v === "string") return { kind: "str", value: v };
  if (typeof v === "object") {
    if (seen.has(v)) return { kind: "str", value: "[...]" };
    seen.add(v);
    try {
      if (Array.isArray(v)) return { kind: "list", items: v.map((x) => fromJsValue(x, seen)) };
      if (v instanceof Map) return { kind: "dict", entries: new Map([...v].map(([k, x]) => [String(k), fromJsValue(x, seen)])) };
      return { kind: "dict", entries: new Map(Object.entries(v).map(([k, x]) => [k, fromJsValue(x, seen)])) };
    } finally {
      seen.delete(v);
    }
  }
  return { kind: "str", value: String(v) };
}

/** The JS value of a decoded JSON value (ints beyond 2^53 become BigInt, so nothing is silently rounded). */
export function toJsValue(v: PyValue): unknown {
  switch (v.kind) {
    case "none":
      return null;
    case "bool":
      return v.value;
    case "int": {
      const n = Number(v.digits);
      return Number.isSafeInteger(n) ? n : BigInt(v.digits);
    }
    case "float":
      return v.value;
    case "str":
      return v.value;
    case "list":
      return v.items.map(toJsValue);
    case "dict": {
      const out: Record<string, unknown> = {};
      for (const [k, x] of v.entries) out[k] = toJsValue(x);
      return out;
    }
  }
}

/** Python's `str.isspace()` characters, for `str.strip()`. */
const PY_SPACE = new Set(
  "\t\n\v\f\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000",
);

/** Python's `s.strip()`. */
export function pyStrip(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && PY_SPACE.has(s[a]!)) a++;
  while (b > a && PY_SPACE.has(s[b - 1]!)) b--;
  return s.slice(a, b);
}
