/**
 * ReCall's client flattening of an `/execute` answer into the RESULT text a model sees inside
 * `<tool_response>` (SPEC.md section 3): for each of result, output, error that is truthy (Python
 * truthiness), in that order, `"{name}: \n{value}\n"` with the value as Python's `str()` prints it;
 * then `strip()`. A call that timed out reads `error: execution timed out`, as ReCall's client says
 * when its request times out.
 */
import { flattenedOverride, rawResultJson } from "./answer.ts";
import { pyJsonLoads } from "../python/json.ts";
import { pyStr } from "../python/repr.ts";
import { pyStrip } from "../python/text.ts";
import { fromJsValue, pyTruthy, type PyValue } from "../python/value.ts";
import { TIMEOUT_ERROR, type ExecuteAnswer } from "./types.ts";

export const TIMEOUT_RESULT = "error: execution timed out";

function decodedResult(a: ExecuteAnswer): PyValue {
  const raw = rawResultJson(a);
  if (raw !== undefined) {
    try {
      return pyJsonLoads(raw);
    } catch {
      // fall through to the parsed value
    }
  }
  return fromJsValue(a.result);
}

export function flattenAnswer(a: ExecuteAnswer): string {
  const override = flattenedOverride(a);
  if (override !== undefined) return override;
  if (a.error === TIMEOUT_ERROR && !a.output && (a.result === null || a.result === undefined)) return TIMEOUT_RESULT;
  let text = "";
  const result = decodedResult(a);
  if (pyTruthy(result)) text += `result: \n${pyStr(result)}\n`;
  if (a.output) text += `output: \n${a.output}\n`;
  if (a.error) text += `error: \n${a.error}\n`;
  return pyStrip(text);
}
