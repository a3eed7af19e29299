/**
 * src/python: the one model of Python values (json.loads, repr/str, truthiness, str methods) that the
 * rollout (tool-call JSON → call expression) and the sandbox (answer flattening) share. Expected
 * strings were produced by CPython 3.11 (`json.loads`, `repr`, `bool`, `str.isspace`, `str.count`).
 */
import { describe, expect, test } from "bun:test";
import { JsonScanner, PyJsonError, pyJsonLoads } from "../src/python/json.ts";
import { pyRepr, pyReprFloat, pyReprStr, pyStr } from "../src/python/repr.ts";
import { pyCount, pyIsSpace, pySplit, pyStrip } from "../src/python/text.ts";
import { fromJsValue, isPyDict, pyDict, pyFloat, pyInt, pyTruthy, pyTypeName, toJsValue, type PyValue } from "../src/python/value.ts";

/** What json.loads(text) throws (the test fails if it parses). */
const thrown = (text: string): Error => {
  try {
    pyJsonLoads(text);
  } catch (e) {
    return e as Error;
  }
  throw new Error(`parsed: ${JSON.stringify(text)}`);
};
const failure = (text: string): string => `${thrown(text).name}: ${thrown(text).message}`;

describe("json.loads", () => {
  test("errors are JSONDecodeError's text, positions in code points, and SyntaxErrors", () => {
    expect(failure('{"😀": 1, "a" 2}')).toBe("PyJsonError: Expecting ':' delimiter: line 1 column 14 (char 13)");
    expect(failure("\n\n  😀")).toBe("PyJsonError: Expecting value: line 3 column 3 (char 4)");
    expect(failure("[1, 2")).toBe("PyJsonError: Expecting ',' delimiter: line 1 column 6 (char 5)");
    expect(failure('{"a": 1} {')).toBe("PyJsonError: Extra data: line 1 column 10 (char 9)");
    expect(failure("\ufeff{}")).toBe("PyJsonError: Unexpected UTF-8 BOM (decode using utf-8-sig): line 1 column 1 (char 0)");
    expect(failure('{"x": "\\u00e')).toBe("PyJsonError: Invalid \\uXXXX escape: line 1 column 9 (char 8)");
    const e = thrown("[1,]");
    expect(e).toBeInstanceOf(PyJsonError);
    expect(e).toBeInstanceOf(SyntaxError);
    expect(e as PyJsonError).toMatchObject({ msg: "Expecting value", pos: 3, lineno: 1, colno: 4 });
  });
  test("a \\u escape with nothing after its four digits is an invalid escape (CPython's C scanner), not an unterminated string", () => {
    expect(failure('{"x": "\\u00e9')).toBe("PyJsonError: Invalid \\uXXXX escape: line 1 column 9 (char 8)");
    expect(failure('"N\\ud83d\\udfe0')).toBe("PyJsonError: Invalid \\uXXXX escape: line 1 column 10 (char 9)");
    expect(failure('"\\u00e9 ')).toBe("PyJsonError: Unterminated string starting at: line 1 column 1 (char 0)");
  });
  test("raw control characters inside strings are refused (strict mode), escaped ones are not", () => {
    expect(failure('"😀\x01"')).toBe("PyJsonError: Invalid control character at: line 1 column 3 (char 2)");
    expect(failure('{"a": "x\ty"}')).toBe("PyJsonError: Invalid control character at: line 1 column 9 (char 8)");
    expect(pyJsonLoads('"x\\ty"')).toBe("x\ty");
  });
  test("values: int vs float, big ints, -0, overflow to inf, escapes and surrogate pairs", () => {
    expect(pyRepr(pyJsonLoads("[-0, -0.0, 1E400, 0.1e1, 10, 123456789012345678901234567890]"))).toBe("[0, -0.0, inf, 1.0, 10, 123456789012345678901234567890]");
    expect(pyJsonLoads('"a\\u00e9\\ud83d\\ude00\\/"')).toBe("aé😀/");
    expect(pyRepr(pyJsonLoads('{"__proto__": {"a": 1}}'))).toBe("{'__proto__': {'a': 1}}");
  });
  test("nesting past 10,000 levels stops with CPython's RecursionError text, not a stack overflow", () => {
    expect(pyRepr(pyJsonLoads("[".repeat(2000) + "]".repeat(2000)))).toHaveLength(4000);
    expect(() => pyJsonLoads("[".repeat(20000))).toThrow(new RangeError("maximum recursion depth exceeded while decoding a JSON array from a unicode string"));
    expect(() => pyJsonLoads('{"a":'.repeat(20000))).toThrow(/decoding a JSON object/);
  });
  test("the scanner records the top-level members' value text (UTF-16 offsets) and leaves what follows unread", () => {
    const body = '{"😀": "é", "result": {"b": 2.0, "a": 1} , "result": [1.50]} trailing';
    const s = new JsonScanner(body);
    const top = s.value();
    expect(isPyDict(top)).toBe(true);
    expect(pyRepr(top)).toBe("{'😀': 'é', 'result': [1.5]}");
    const [a, b] = s.spans.get("result")!;
    expect(body.slice(a, b)).toBe("[1.50]");
    expect(body.slice(...s.spans.get("😀")!)).toBe('"é"');
    expect([...s.spans.keys()]).toEqual(["😀", "result"]);
  });
});

describe("repr and str", () => {
  test("non-printable characters are escaped as CPython escapes them", () => {
    expect(pyReprStr("\x85\xad\u2028\ue000\u{e0001}\u{10ffff}\xa0\u3000 x")).toBe("'\\x85\\xad\\u2028\\ue000\\U000e0001\\U0010ffff\\xa0\\u3000 x'");
    expect(pyReprStr("\x7f\x9f\xa0\xa1")).toBe("'\\x7f\\x9f\\xa0\xa1'");
    expect(pyReprStr("\ud800")).toBe("'\\ud800'");
    expect(pyReprStr("\udc00x\ud800")).toBe("'\\udc00x\\ud800'");
  });
  test("quote choice", () => {
    expect(pyReprStr("'")).toBe(`"'"`);
    expect(pyReprStr('"')).toBe(`'"'`);
    expect(pyReprStr(`'"`)).toBe(`'\\'"'`);
  });
  test("str() prints a top-level str bare and everything else as repr", () => {
    const v: PyValue = pyDict([["s", "x"], ["l", [pyInt(1), pyFloat(1e16), null, true]]]);
    expect(pyStr(v)).toBe("{'s': 'x', 'l': [1, 1e+16, None, True]}");
    expect(pyStr("it's")).toBe("it's");
    expect(pyStr(pyFloat(-0))).toBe("-0.0");
    expect(pyReprFloat(2 ** -1074)).toBe("5e-324");
    expect(pyReprFloat(9007199254740993)).toBe("9007199254740992.0");
  });
});

describe("values", () => {
  test("truthiness as bool() (NaN is true, -0.0 false)", () => {
    const cases: [PyValue, boolean][] = [
      [null, false], [false, false], [pyInt(0), false], [pyFloat(0), false], [pyFloat(-0), false], [pyFloat(NaN), true], ["", false],
      [[], false], [pyDict([]), false], [pyInt(10n ** 30n), true], [[pyInt(0)], true], [pyDict([["", pyInt(0)]]), true], ["x", true], [true, true],
    ];
    for (const [v, want] of cases) expect([pyRepr(v), pyTruthy(v)]).toEqual([pyRepr(v), want]);
  });
  test("type names", () => {
    const names = [null, true, "s", pyInt(1), pyFloat(1), [], pyDict([])].map(pyTypeName);
    expect(names).toEqual(["NoneType", "bool", "str", "int", "float", "list", "dict"]);
  });
  test("to JS: safe ints as numbers, larger ones as BigInt, every key an own property", () => {
    const js = toJsValue(pyJsonLoads('{"n": 9007199254740991, "big": 9007199254740993, "f": 2.0, "__proto__": {"a": [null]}}')) as Record<string, unknown>;
    expect(js.n).toBe(9007199254740991);
    expect(js.big).toBe(9007199254740993n);
    expect(js.f).toBe(2);
    expect(Object.getPrototypeOf(js)).toBe(Object.prototype);
    expect(Object.hasOwn(js, "__proto__")).toBe(true);
    expect(Object.keys(js)).toEqual(["n", "big", "f", "__proto__"]);
  });
  test("from JS: ints vs floats by value, Maps, undefined as None, a cycle as [...]", () => {
    const cyclic: unknown[] = [1];
    cyclic.push(cyclic);
    expect(pyRepr(fromJsValue(cyclic))).toBe("[1, '[...]']");
    expect(pyRepr(fromJsValue([1, 1.5, -0, undefined, new Map<unknown, unknown>([[2, "x"]])]))).toBe("[1, 1.5, -0.0, None, {'2': 'x'}]");
    const shared = { a: 1 };
    expect(pyRepr(fromJsValue([shared, shared]))).toBe("[{'a': 1}, {'a': 1}]");
  });
});

describe("str methods", () => {
  // [c for c in range(0x110000) if chr(c).isspace()] — none is outside the BMP.
  const SPACES = [9, 10, 11, 12, 13, 28, 29, 30, 31, 32, 133, 160, 5760, 8192, 8193, 8194, 8195, 8196, 8197, 8198, 8199, 8200, 8201, 8202, 8232, 8233, 8239, 8287, 12288];
  test("isspace() over every UTF-16 code unit", () => {
    const got: number[] = [];
    for (let c = 0; c < 0x10000; c++) if (pyIsSpace(c)) got.push(c);
    expect(got).toEqual(SPACES);
  });
  test("split(), strip(), count()", () => {
    expect(pySplit("  a\x1cb\x85c\ufeffd ")).toEqual(["a", "b", "c\ufeffd"]);
    expect(pyStrip("\u3000\u2028x y\x1f")).toBe("x y");
    expect([pyCount("abcabca", "a"), pyCount("aaaa", "aa"), pyCount("😀abc", "")]).toEqual([3, 2, 5]);
  });
});
