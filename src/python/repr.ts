/**
 * Python's `repr()` and `str()` of the values in value.ts, as CPython prints them: strings in single
 * quotes (double quotes when the text holds a `'` and no `"`), Python escapes for non-printable
 * characters, `True`/`False`/`None`, float layout (`1.0`, `1e-05`, `1e+16`, `inf`, `nan`), dicts and
 * lists nested with `, ` and `: ` separators.
 */
import type { PyValue } from "./value.ts";

/** Python's `str.isprintable()` is false for categories Other (Cc Cf Cs Co Cn) and Separator (Zl Zp Zs), space excepted. */
const NON_PRINTABLE = /^[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Zs}]$/u;

const hex = (n: number, width: number) => n.toString(16).padStart(width, "0");

/** Python `repr(s)` for a str (a lone surrogate is one code point, as in Python). */
export function pyReprStr(s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (ch === quote || ch === "\\") out += "\\" + ch;
    else if (ch === "\t") out += "\\t";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (cp < 0x20 || cp === 0x7f) out += "\\x" + hex(cp, 2);
    else if (cp < 0x7f || !NON_PRINTABLE.test(ch)) out += ch;
    else if (cp <= 0xff) out += "\\x" + hex(cp, 2);
    else if (cp <= 0xffff) out += "\\u" + hex(cp, 4);
    else out += "\\U" + hex(cp, 8);
  }
  return out + quote;
}

/**
 * Python `repr(x)` for a float: the shortest digits that round-trip (JavaScript finds the same ones),
 * laid out as Python does — scientific when the decimal exponent is < -4 or >= 16 (at least two
 * exponent digits), otherwise positional with at least one digit after the point.
 */
export function pyReprFloat(x: number): string {
  if (Number.isNaN(x)) return "nan";
  if (x === Infinity) return "inf";
  if (x === -Infinity) return "-inf";
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const sign = x < 0 ? "-" : "";
  const [mant, expText] = Math.abs(x).toExponential().split("e") as [string, string];
  const digits = mant.replace(".", "");
  const exp = Number(expText);
  if (exp < -4 || exp >= 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    return `${sign}${m}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
  }
  if (exp < 0) return `${sign}0.${"0".repeat(-exp - 1)}${digits}`;
  const intPart = digits.slice(0, exp + 1).padEnd(exp + 1, "0");
  return `${sign}${intPart}.${digits.slice(exp + 1) || "0"}`;
}

/** Python `repr(v)`. */
export function pyRepr(v: PyValue): string {
  if (v === null) return "None";
  if (v === true) return "True";
  if (v === false) return "False";
  if (typeof v === "string") return pyReprStr(v);
  if (Array.isArray(v)) return "[" + v.map(pyRepr).join(", ") + "]";
  if (v.py === "int") return v.value.toString();
  if (v.py === "float") return pyReprFloat(v.value);
  return "{" + [...v.entries].map(([k, x]) => `${pyReprStr(k)}: ${pyRepr(x)}`).join(", ") + "}";
}

/** Python `str(v)`: the text itself for a str, `repr` for everything else (containers print their items' repr). */
export function pyStr(v: PyValue): string {
  return typeof v === "string" ? v : pyRepr(v);
}
