/**
 * JSON parsed the way Python's `json.loads` parses it (strict mode, the default), into the values of
 * value.ts: ints (arbitrary size) apart from floats, object members in document order (a repeated
 * key keeps its first position and its last value), `NaN`/`Infinity`/`-Infinity` accepted, raw
 * control characters in strings refused, and on failure CPython's message with CPython's positions
 * (code points, not UTF-16 units): `Expecting ',' delimiter: line 1 column 9 (char 8)`. These
 * messages reach the model as tool results, so they are kept to the letter.
 */
import { pyReprFloat } from "./repr.ts";
import { pyFloat, pyInt, type PyValue } from "./value.ts";

/** A `json.JSONDecodeError`: `msg` plus where, formatted as Python formats it. */
export class PyJsonError extends SyntaxError {
  constructor(readonly msg: string, readonly pos: number, readonly lineno: number, readonly colno: number) {
    super(`${msg}: line ${lineno} column ${colno} (char ${pos})`);
    this.name = "PyJsonError";
  }

  /** The error for `msg` at UTF-16 offset `offset` of `text`, placed the way Python counts (code points). */
  static at(text: string, msg: string, offset: number): PyJsonError {
    let pos = 0;
    let lineno = 1;
    let lastNl = -1; // code-point index of the last newline before offset
    for (let i = 0; i < offset && i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c >= 0xdc00 && c <= 0xdfff && i > 0 && isHighSurrogate(text.charCodeAt(i - 1))) continue; // second half of a pair
      if (c === 0x0a) {
        lineno++;
        lastNl = pos;
      }
      pos++;
    }
    return new PyJsonError(msg, pos, lineno, pos - lastNl);
  }
}

const isHighSurrogate = (c: number) => c >= 0xd800 && c <= 0xdbff;

/** Deeper than this, parsing stops (CPython stops near its recursion limit with a RecursionError). */
const MAX_DEPTH = 10_000;
const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?/y;
const HEX4 = /^[0-9a-fA-F]{4}$/;
const SIMPLE_ESCAPES: Readonly<Record<string, string>> = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" };

/**
 * The parser, reading one JSON text. Besides the value it records, for a top-level object, where
 * each member's value text starts and ends (UTF-16 offsets), so a client can pass a server's value
 * on verbatim (`2.0` stays `2.0`).
 */
export class JsonScanner {
  private pos = 0;
  /** Top-level object members: key → [start, end) of the value's text (the last one for a repeated key). */
  readonly spans = new Map<string, [number, number]>();

  constructor(private readonly text: string) {}

  /** Python `json.loads(text)`: one value, nothing after it but whitespace. Throws PyJsonError. */
  static parse(text: string): PyValue {
    const s = new JsonScanner(text);
    if (text.startsWith("\ufeff")) s.fail("Unexpected UTF-8 BOM (decode using utf-8-sig)", 0);
    const v = s.value();
    s.ws();
    if (s.pos !== text.length) s.fail("Extra data", s.pos);
    return v;
  }

  private fail(msg: string, at: number): never {
    throw PyJsonError.at(this.text, msg, at);
  }

  private ws(): void {
    const t = this.text;
    while (this.pos < t.length) {
      const c = t.charCodeAt(this.pos);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) this.pos++;
      else break;
    }
  }

  /** The value at the scanner's position (after whitespace); what follows it is left unread. */
  value(depth = 0): PyValue {
    this.ws();
    const t = this.text;
    const i = this.pos;
    const c = t[i];
    if (c === '"') return this.string();
    if (c === "{" || c === "[") {
      if (depth >= MAX_DEPTH) {
        throw new RangeError(`maximum recursion depth exceeded while decoding a JSON ${c === "{" ? "object" : "array"} from a unicode string`);
      }
      this.pos++;
      return c === "{" ? this.object(depth) : this.array(depth);
    }
    const word = (w: string, v: PyValue): PyValue => ((this.pos += w.length), v);
    if (t.startsWith("null", i)) return word("null", null);
    if (t.startsWith("true", i)) return word("true", true);
    if (t.startsWith("false", i)) return word("false", false);
    if (t.startsWith("NaN", i)) return word("NaN", pyFloat(NaN));
    if (t.startsWith("Infinity", i)) return word("Infinity", pyFloat(Infinity));
    if (t.startsWith("-Infinity", i)) return word("-Infinity", pyFloat(-Infinity));
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(t);
    if (!m) return this.fail("Expecting value", i);
    const [whole, frac, exp] = m;
    this.pos += whole.length;
    return frac !== undefined || exp !== undefined ? pyFloat(Number(whole)) : pyInt(BigInt(whole));
  }

  /** A string whose opening quote is at the scanner's position. */
  private string(): string {
    const t = this.text;
    const begin = this.pos;
    let out = "";
    let i = begin + 1;
    let chunk = i;
    for (;;) {
      if (i >= t.length) this.fail("Unterminated string starting at", begin);
      const c = t.charCodeAt(i);
      if (c === 0x22) {
        this.pos = i + 1;
        return out + t.slice(chunk, i);
      }
      if (c < 0x20) this.fail("Invalid control character at", i);
      if (c !== 0x5c) {
        i++;
        continue;
      }
      out += t.slice(chunk, i);
      const e = t[i + 1];
      if (e === undefined) this.fail("Unterminated string starting at", begin);
      if (Object.hasOwn(SIMPLE_ESCAPES, e)) {
        out += SIMPLE_ESCAPES[e];
        i += 2;
      } else if (e === "u") {
        // CPython also refuses an escape with nothing after its four digits (not "Unterminated string").
        // A surrogate pair written as two escapes needs no joining: its two halves are the UTF-16 text.
        if (i + 6 >= t.length || !HEX4.test(t.slice(i + 2, i + 6))) this.fail("Invalid \\uXXXX escape", i + 1);
        out += String.fromCharCode(parseInt(t.slice(i + 2, i + 6), 16));
        i += 6;
      } else {
        this.fail("Invalid \\escape", i);
      }
      chunk = i;
    }
  }

  /** An array whose `[` has been read. */
  private array(depth: number): PyValue[] {
    const items: PyValue[] = [];
    this.ws();
    if (this.text[this.pos] === "]") return this.pos++, items;
    for (;;) {
      items.push(this.value(depth + 1));
      this.ws();
      const c = this.text[this.pos];
      if (c === "]") return this.pos++, items;
      if (c !== ",") this.fail("Expecting ',' delimiter", this.pos);
      this.pos++;
    }
  }

  /** An object whose `{` has been read. */
  private object(depth: number): PyValue {
    const entries = new Map<string, PyValue>();
    this.ws();
    if (this.text[this.pos] === "}") return this.pos++, { py: "dict", entries };
    for (;;) {
      if (this.text[this.pos] !== '"') this.fail("Expecting property name enclosed in double quotes", this.pos);
      const key = this.string();
      this.ws();
      if (this.text[this.pos] !== ":") this.fail("Expecting ':' delimiter", this.pos);
      this.pos++;
      this.ws();
      const start = this.pos;
      entries.set(key, this.value(depth + 1));
      if (depth === 0) this.spans.set(key, [start, this.pos]);
      this.ws();
      const c = this.text[this.pos];
      if (c === "}") return this.pos++, { py: "dict", entries };
      if (c !== ",") this.fail("Expecting ',' delimiter", this.pos);
      this.pos++;
      this.ws();
    }
  }
}

/** Python `json.loads(text)`. Throws PyJsonError (a SyntaxError) as Python raises JSONDecodeError. */
export function pyJsonLoads(text: string): PyValue {
  return JsonScanner.parse(text);
}

/** Options of Python's `json.dumps` that recall writes with. */
export interface PyJsonDumpsOptions {
  /** Spaces per level, items one per line (separators `,` and `: `); undefined: one line with `, ` and `: `. */
  indent?: number;
  /** Python's default (true) writes every non-ASCII character as `\uXXXX`; false keeps it (as HF's `tojson`). */
  ensureAscii?: boolean;
}

/** A str as `json.dumps` writes it. */
function dumpsStr(s: string, ensureAscii: boolean): string {
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]!;
    const c = s.charCodeAt(i);
    if (ch === '"') out += '\\"';
    else if (ch === "\\") out += "\\\\";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (ch === "\b") out += "\\b";
    else if (ch === "\f") out += "\\f";
    else if (c < 0x20 || (ensureAscii && c > 0x7e)) out += "\\u" + c.toString(16).padStart(4, "0");
    else out += ch;
  }
  return out + '"';
}

/** Python `json.dumps(v, indent=…, ensure_ascii=…)` (keys in the dict's order; floats as `float.__repr__`). */
export function pyJsonDumps(v: PyValue, o: PyJsonDumpsOptions = {}): string {
  const ascii = o.ensureAscii ?? true;
  const write = (x: PyValue, depth: number): string => {
    if (x === null) return "null";
    if (x === true) return "true";
    if (x === false) return "false";
    if (typeof x === "string") return dumpsStr(x, ascii);
    if (!Array.isArray(x) && x.py === "int") return x.value.toString();
    if (!Array.isArray(x) && x.py === "float") {
      if (Number.isNaN(x.value)) return "NaN";
      if (!Number.isFinite(x.value)) return x.value > 0 ? "Infinity" : "-Infinity";
      return pyReprFloat(x.value);
    }
    const items = Array.isArray(x) ? x.map((y) => write(y, depth + 1)) : [...x.entries].map(([k, y]) => `${dumpsStr(k, ascii)}: ${write(y, depth + 1)}`);
    const [open, close] = Array.isArray(x) ? ["[", "]"] : ["{", "}"];
    if (items.length === 0) return open + close;
    if (o.indent === undefined) return open + items.join(", ") + close;
    const pad = "\n" + " ".repeat(o.indent * (depth + 1));
    return open + pad + items.join("," + pad) + "\n" + " ".repeat(o.indent * depth) + close;
  };
  return write(v, 0);
}
