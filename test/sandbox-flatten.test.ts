/** ReCall's client flattening (SPEC.md section 3) and Python str() of answers, without starting any worker. */
import { describe, expect, test } from "bun:test";
import { answerFromResultJson, answerToJson, failureAnswer, parseAnswerBody, timeoutAnswer } from "../src/sandbox/answer.ts";
import { TIMEOUT_RESULT, flattenAnswer } from "../src/sandbox/flatten.ts";
import { JsonScanner } from "../src/python/json.ts";
import { pyReprFloat as pyFloatRepr, pyReprStr as pyReprString, pyStr } from "../src/python/repr.ts";
import { pyStrip } from "../src/python/text.ts";
import { fromJsValue } from "../src/python/value.ts";

const strOf = (json: string) => pyStr(JsonScanner.parse(json));

describe("Python str() of JSON values", () => {
  test("floats print as Python's repr", () => {
    const cases: [number, string][] = [
      [2, "2.0"], [0.1, "0.1"], [1e16, "1e+16"], [1.5e16, "1.5e+16"], [1e15, "1000000000000000.0"],
      [1e-5, "1e-05"], [0.0001, "0.0001"], [123.456, "123.456"], [-0.5, "-0.5"], [-0, "-0.0"],
      [1.2345678901234568e17, "1.2345678901234568e+17"], [5e-324, "5e-324"], [NaN, "nan"], [Infinity, "inf"], [-Infinity, "-inf"],
    ];
    for (const [x, want] of cases) expect(pyFloatRepr(x)).toBe(want);
  });
  test("strings print as repr inside containers, with Python's quote choice and escapes", () => {
    expect(pyReprString("abc")).toBe("'abc'");
    expect(pyReprString("it's")).toBe(`"it's"`);
    expect(pyReprString(`it's "x"`)).toBe(`'it\\'s "x"'`);
    expect(pyReprString("a\nb\tc\\")).toBe("'a\\nb\\tc\\\\'");
    expect(pyReprString("\x00\x7f\u00e9\u00a0\u200b😀")).toBe("'\\x00\\x7fé\\xa0\\u200b😀'");
  });
  test("containers, ints, bools, None as Python prints them; int vs float kept from the text", () => {
    expect(strOf('{"a": 1, "b": [1, 2.0, "x"], "c": null, "d": true, "e": false}')).toBe("{'a': 1, 'b': [1, 2.0, 'x'], 'c': None, 'd': True, 'e': False}");
    expect(strOf('"plain top-level string"')).toBe("plain top-level string");
    expect(strOf("12345678901234567890123")).toBe("12345678901234567890123");
    expect(strOf("1E2")).toBe("100.0");
    expect(strOf("-0")).toBe("0");
    expect(strOf('{"b": 1, "2": 2, "a": 3}')).toBe("{'b': 1, '2': 2, 'a': 3}");
    expect(strOf('{"a": 1, "a": 2}')).toBe("{'a': 2}");
    expect(strOf("[NaN, Infinity, -Infinity]")).toBe("[nan, inf, -inf]");
    expect(strOf("[]")).toBe("[]");
    expect(strOf("{}")).toBe("{}");
  });
  test("JS values (no JSON text) print the same way where they can", () => {
    expect(pyStr(fromJsValue({ a: [1, 2.5, "q"], b: null, c: true }))).toBe("{'a': [1, 2.5, 'q'], 'b': None, 'c': True}");
    expect(pyStr(fromJsValue("hi"))).toBe("hi");
    expect(pyStr(fromJsValue(10n ** 20n))).toBe("100000000000000000000");
  });
  test("strip() uses Python's whitespace, not JavaScript's", () => {
    expect(pyStrip(" \t\n x \x1c\x85")).toBe("x");
    expect(pyStrip("\ufeffx\ufeff")).toBe("\ufeffx\ufeff");
  });
  test("malformed JSON is refused", () => {
    expect(() => JsonScanner.parse("{'a': 1}")).toThrow(SyntaxError);
    expect(() => JsonScanner.parse("[1, 2")).toThrow(SyntaxError);
    expect(() => JsonScanner.parse("1 2")).toThrow(SyntaxError);
  });
});

describe("flattenAnswer", () => {
  test("result, output, error in that order, each when truthy, then stripped", () => {
    const a = answerFromResultJson("hello\n", '{"x": [1, 2.0]}', null);
    expect(flattenAnswer(a)).toBe("result: \n{'x': [1, 2.0]}\noutput: \nhello");
    expect(flattenAnswer(answerFromResultJson("", null, "division by zero"))).toBe("error: \ndivision by zero");
    expect(flattenAnswer(answerFromResultJson("partial\n", null, "boom"))).toBe("output: \npartial\n\nerror: \nboom");
  });
  test("falsy results (None, 0, False, '', [], {}) are left out, as in ReCall", () => {
    for (const r of ["null", "0", "0.0", "false", '""', "[]", "{}"]) expect(flattenAnswer(answerFromResultJson("", r, null))).toBe("");
    expect(flattenAnswer(parseAnswerBody('{"output": "", "result": NaN, "error": null}'))).toBe("result: \nnan");
  });
  test("a string result prints bare", () => {
    expect(flattenAnswer(answerFromResultJson("", '"line one\\nline two"', null))).toBe("result: \nline one\nline two");
  });
  test("timeouts and transport failures read as ReCall's client writes them", () => {
    expect(flattenAnswer(timeoutAnswer())).toBe(TIMEOUT_RESULT);
    expect(TIMEOUT_RESULT).toBe("error: execution timed out");
    expect(flattenAnswer(failureAnswer("HTTP 500 from x", "error: 500"))).toBe("error: 500");
  });
  test("plain objects without JSON text still flatten", () => {
    expect(flattenAnswer({ output: "", result: { a: 1 }, error: null })).toBe("result: \n{'a': 1}");
    expect(flattenAnswer({ output: "", result: 2.5, error: null })).toBe("result: \n2.5");
  });
});

describe("answer bodies", () => {
  test("a server's result text is kept verbatim (2.0, key order, big ints)", () => {
    const body = '{"output": "", "result": {"b": 2.0, "a": 12345678901234567890}, "error": null}';
    const a = parseAnswerBody(body);
    expect(flattenAnswer(a)).toBe("result: \n{'b': 2.0, 'a': 12345678901234567890}");
    expect(answerToJson(a)).toBe('{"output": "", "result": {"b": 2.0, "a": 12345678901234567890}, "error": null}');
  });
  test("ReCall's compact FastAPI body parses", () => {
    const a = parseAnswerBody('{"output":"hi\\n","result":null,"error":"oops"}');
    expect(a).toEqual({ output: "hi\n", result: null, error: "oops" });
    expect(flattenAnswer(a)).toBe("output: \nhi\n\nerror: \noops");
  });
  test("a body that is not an object is refused", () => {
    expect(() => parseAnswerBody("[1]")).toThrow(TypeError);
    expect(() => parseAnswerBody("nope")).toThrow(SyntaxError);
  });
});
