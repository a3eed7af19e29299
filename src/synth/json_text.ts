/**
 * JSON text as Python's `json.dumps` writes it by default (`", "` and `": "` separators, non-ASCII escaped): the
 * form a tool call takes inside `<tool_call>` in ReCall's traces, and the form its schema strings take with indent 4.
 */

function escapeString(s: string): string {
  // JSON.stringify escapes quotes, backslashes and control characters as Python does; Python also escapes non-ASCII.
  return JSON.stringify(s).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/** `json.dumps(value)`: one line. Integers only for numbers that are integers (as the generators use them). */
export function pyJsonDumps(value: JsonValue): string {
  if (value === null) return "null";
  if (typeof value === "string") return escapeString(value);
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new Error(`cannot write ${value} as JSON`);
    return Number.isInteger(value) ? String(value) : JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(pyJsonDumps).join(", ")}]`;
  return `{${Object.entries(value).map(([k, v]) => `${escapeString(k)}: ${pyJsonDumps(v)}`).join(", ")}}`;
}

/** `json.dumps(value, indent=4)`: how ReCall's rows carry `func_schemas`. */
export function pyJsonDumpsIndent4(value: JsonValue): string {
  return JSON.stringify(value, null, 4).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}
