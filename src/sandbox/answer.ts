/**
 * Building and serialising ExecuteAnswers without losing what Python printed. An answer made from
 * a sandbox's JSON remembers that JSON's `result` text (so `2.0` stays `2.0`, big ints stay exact,
 * dict keys keep their order when flattened or served again); an answer for a transport failure
 * remembers the exact string ReCall's client would have produced for it. Both live in WeakMaps, so
 * ExecuteAnswer stays the plain `{output, result, error}` object of the wire format.
 */
import { JsonScanner, pyJsonLoads } from "../python/json.ts";
import { isPyDict, toJsValue } from "../python/value.ts";
import type { ExecuteAnswer } from "./types.ts";
import { TIMEOUT_ERROR } from "./types.ts";

const rawResults = new WeakMap<ExecuteAnswer, string>();
const flatOverrides = new WeakMap<ExecuteAnswer, string>();

/** An answer whose result is given as Python's JSON text (or null for `None`/no result). */
export function answerFromResultJson(output: string, resultJson: string | null, error: string | null): ExecuteAnswer {
  const answer: ExecuteAnswer = { output, result: resultJson === null ? null : toJsValue(pyJsonLoads(resultJson)), error };
  if (resultJson !== null) rawResults.set(answer, resultJson);
  return answer;
}

/** The answer for a call that ran past its limit (flattens to `error: execution timed out`). */
export function timeoutAnswer(): ExecuteAnswer {
  return { output: "", result: null, error: TIMEOUT_ERROR };
}

/** An answer that stands for a failure outside the tool (HTTP status, connection), with ReCall's flattened text for it. */
export function failureAnswer(error: string, flattened: string): ExecuteAnswer {
  const answer: ExecuteAnswer = { output: "", result: null, error };
  flatOverrides.set(answer, flattened);
  return answer;
}

export function rawResultJson(a: ExecuteAnswer): string | undefined {
  return rawResults.get(a);
}

export function flattenedOverride(a: ExecuteAnswer): string | undefined {
  return flatOverrides.get(a);
}

/**
 * Parses an `/execute` response body (ours or ReCall's FastAPI server's, NaN and Infinity
 * included), keeping the `result` member's JSON text; what follows the object is not read. Throws
 * SyntaxError (PyJsonError, with Python's message) on a body that is not JSON, TypeError on JSON that
 * is not an object, RangeError on nesting too deep to read.
 */
export function parseAnswerBody(body: string): ExecuteAnswer {
  const scanner = new JsonScanner(body);
  const top = scanner.value();
  if (!isPyDict(top)) throw new TypeError("an /execute answer must be a JSON object");
  const text = (key: string): string | null => {
    const v = top.entries.get(key);
    if (v === undefined || v === null) return null;
    return typeof v === "string" ? v : JSON.stringify(toJsValue(v), (_k, x: unknown) => (typeof x === "bigint" ? x.toString() : x));
  };
  const span = scanner.spans.get("result");
  const result = top.entries.get("result");
  const answer: ExecuteAnswer = {
    output: text("output") ?? "",
    result: result === undefined ? null : toJsValue(result),
    error: text("error"),
  };
  if (span && result !== undefined && result !== null) rawResults.set(answer, body.slice(span[0], span[1]));
  return answer;
}

/** The JSON body our server sends: `{"output", "result", "error"}`, with the result's original text where known. */
export function answerToJson(a: ExecuteAnswer): string {
  let result = rawResults.get(a);
  if (result === undefined) {
    try {
      result = JSON.stringify(a.result ?? null, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v)) ?? "null";
    } catch {
      result = JSON.stringify(String(a.result));
    }
  }
  return `{"output": ${JSON.stringify(a.output)}, "result": ${result}, "error": ${JSON.stringify(a.error)}}`;
}
