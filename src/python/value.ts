/**
 * Python values as `json.loads` makes them, with the distinctions Python keeps and JavaScript loses:
 * `int` (arbitrary size) apart from `float`, and dicts in insertion order (a JavaScript object would
 * move integer-like keys first). `None`, `bool`, `str` and `list` are JavaScript's own `null`,
 * booleans, strings and arrays. Conversion from and to plain JavaScript values, Python's type
 * names and truthiness live here too.
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
  /** Insertion order; a repeated key keeps its first position and its last value (as a dict literal does). */
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

/** Python truthiness: None, False, 0, 0.0 (and -0.0), '', [] and {} are false; NaN is true. */
export function pyTruthy(v: PyValue): boolean {
  if (v === null) return false;
  if (typeof v === "boolean") return v;
  if (typeof v === "string" || Array.isArray(v)) return v.length > 0;
  if (v.py === "int") return v.value !== 0n;
  if (v.py === "float") return v.value !== 0;
  return v.entries.size > 0;
}

/**
 * The Python value of a plain JavaScript value, for answers that carry no JSON text: integral numbers
 * (and bigints) become ints, other numbers (and -0) floats, Maps and objects dicts, undefined None; a
 * container met again inside itself prints as `[...]`.
 */
export function fromJsValue(v: unknown, seen: Set<object> = new Set()): PyValue {
  if (v === null || v === undefined) return null;
  if (typeof v === "boolean" || typeof v === "string") return v;
  if (typeof v === "bigint") return pyInt(v);
  if (typeof v === "number") return Number.isInteger(v) && !Object.is(v, -0) ? pyInt(v) : pyFloat(v);
  if (typeof v === "object") {
    if (seen.has(v)) return "[...]";
    seen.add(v);
    try {
      if (Array.isArray(v)) return v.map((x) => fromJsValue(x, seen));
      if (v instanceof Map) return pyDict([...v].map(([k, x]) => [String(k), fromJsValue(x, seen)]));
      return pyDict(Object.entries(v).map(([k, x]) => [k, fromJsValue(x, seen)]));
    } finally {
      seen.delete(v);
    }
  }
  return String(v);
}

/**
 * The plain JavaScript value of a Python value: ints within 2^53 become numbers, larger ones BigInt
 * (nothing is silently rounded); dicts become objects with every key as an own property (`__proto__`
 * included, as Python keeps it), in JavaScript's key order.
 */
export function toJsValue(v: PyValue): unknown {
  if (v === null || typeof v === "boolean" || typeof v === "string") return v;
  if (Array.isArray(v)) return v.map(toJsValue);
  if (v.py === "int") {
    const n = Number(v.value);
    return Number.isSafeInteger(n) ? n : v.value;
  }
  if (v.py === "float") return v.value;
  return Object.fromEntries([...v.entries].map(([k, x]) => [k, toJsValue(x)]));
}
