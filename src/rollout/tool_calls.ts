/**
 * Tool calls in a ReCall assistant turn (SPEC section 1): found with the non-greedy pattern
 * `<tool_call>(.*?)</tool_call>` (dot matches newline), each body stripped; a turn whose open and close
 * tags are unbalanced, or where a close comes before its open, has no valid calls. Each call's JSON
 * becomes the Python expression the sandbox evaluates: `name(k1=repr(v1), k2=repr(v2))`.
 */
import { pyJsonLoads, PyJsonError } from "../python/json.ts";
import { pyRepr, pyStr } from "../python/repr.ts";
import { pyStrip } from "../python/text.ts";
import { isPyDict, pyDict, pyTypeName, type PyDict, type PyValue } from "../python/value.ts";

export const TOOL_CALL_OPEN = "<tool_call>";
export const TOOL_CALL_CLOSE = "</tool_call>";

/** One call as the model wrote it, and what it turned into. */
export type ToolCall =
  | {
      ok: true;
      /** The stripped text between the tags (CALL_JSON_TEXT). */
      text: string;
      name: string;
      /** The arguments in the JSON's key order. */
      args: PyDict;
      /** The Python call expression, `name(k=repr(v), ...)`. */
      expr: string;
    }
  | {
      ok: false;
      text: string;
      /** The tool result the model sees instead of running anything: `Parse tool call failed: <reason>`. */
      result: string;
    };

export const PARSE_FAILED_PREFIX = "Parse tool call failed: ";

function positions(s: string, tag: string): number[] {
  const out: number[] = [];
  for (let i = s.indexOf(tag); i >= 0; i = s.indexOf(tag, i + tag.length)) out.push(i);
  return out;
}

/**
 * The stripped bodies of the turn's `<tool_call>` blocks, or [] when the tags are unbalanced or out of
 * order (the turn then counts as having no valid calls).
 */
export function extractToolCallTexts(turn: string): string[] {
  const opens = positions(turn, TOOL_CALL_OPEN);
  const closes = positions(turn, TOOL_CALL_CLOSE);
  if (opens.length !== closes.length) return [];
  for (let i = 0; i < opens.length; i++) if (closes[i]! < opens[i]!) return [];
  const out: string[] = [];
  const re = /<tool_call>([\s\S]*?)<\/tool_call>/g;
  for (let m = re.exec(turn); m; m = re.exec(turn)) out.push(pyStrip(m[1]!));
  return out;
}

/**
 * What ReCall's `json.loads(text)` → `call['name']`, `call.get('arguments', {})`, `.items()` does, with
 * the Python exception text as the failure reason.
 */
export function parseToolCall(text: string): ToolCall {
  const failed = (reason: string): ToolCall => ({ ok: false, text, result: PARSE_FAILED_PREFIX + reason });
  let value: PyValue;
  try {
    value = pyJsonLoads(text);
  } catch (e) {
    if (e instanceof PyJsonError) return failed(e.message);
    throw e;
  }
  if (!isPyDict(value)) {
    const t = pyTypeName(value);
    if (t === "list") return failed("list indices must be integers or slices, not str");
    if (t === "str") return failed("string indices must be integers");
    return failed(`'${t}' object is not subscriptable`);
  }
  if (!value.entries.has("name")) return failed("'name'");
  const name = pyStr(value.entries.get("name")!);
  const args = value.entries.has("arguments") ? value.entries.get("arguments")! : pyDict([]);
  if (!isPyDict(args)) return failed(`'${pyTypeName(args)}' object has no attribute 'items'`);
  const expr = `${name}(${[...args.entries].map(([k, v]) => `${k}=${pyRepr(v)}`).join(", ")})`;
  return { ok: true, text, name, args, expr };
}

/** The valid-or-failed calls of one assistant turn, in order. */
export function toolCallsOf(turn: string): ToolCall[] {
  return extractToolCallTexts(turn).map(parseToolCall);
}
