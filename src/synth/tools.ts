/** A JSON value (the schemas). */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/**
 * Tool definitions shared by the families: a tool is its Python source (part of a row's `env`) and its JSON schema
 * (one entry of `func_schemas`, in the form of ReCall's `wikipedia_search` schema). Distractor tools are real,
 * working tools that a task never needs; they make the model pick the right one from the list.
 */
import { pyJsonDumps } from "../python/json.ts";
import { fromJsValue } from "../python/value.ts";
import type { Rng } from "./random.ts";

export interface ToolParam {
  name: string;
  type: "string" | "integer" | "number";
  description: string;
}

export interface ToolDef {
  name: string;
  description: string;
  params: readonly ToolParam[];
  /** Python source defining the function (and any helpers it needs). */
  source: string;
  /** The schema as published elsewhere (ReCall's `wikipedia_search`), used verbatim instead of one built from `params`. */
  schema?: JsonValue;
}

export function toolSchema(t: ToolDef): JsonValue {
  if (t.schema !== undefined) return t.schema;
  const properties: Record<string, JsonValue> = {};
  for (const p of t.params) properties[p.name] = { type: p.type, description: p.description };
  return {
    type: "function",
    function: { name: t.name, description: t.description, parameters: { type: "object", properties, required: t.params.map((p) => p.name) } },
  };
}

/** `env` and `func_schemas` for a set of tools, in the given order. */
export function toolsetText(tools: readonly ToolDef[]): { env: string; funcSchemas: string } {
  return { env: tools.map((t) => t.source).join("\n\n"), funcSchemas: pyJsonDumps(fromJsValue(tools.map(toolSchema)), { indent: 4 }) };
}

const DISTRACTORS: readonly ToolDef[] = [
  {
    name: "reverse_text",
    description: "Reverse the characters of a text.",
    params: [{ name: "text", type: "string", description: "Text to reverse." }],
    source: "def reverse_text(text: str):\n    return str(text)[::-1]\n",
  },
  {
    name: "word_count",
    description: "Count the words in a text.",
    params: [{ name: "text", type: "string", description: "Text whose words are counted." }],
    source: "def word_count(text: str):\n    return len(str(text).split())\n",
  },
  {
    name: "to_upper",
    description: "Convert a text to upper case.",
    params: [{ name: "text", type: "string", description: "Text to convert." }],
    source: "def to_upper(text: str):\n    return str(text).upper()\n",
  },
  {
    name: "days_between",
    description: "Number of days between two dates given as YYYY-MM-DD.",
    params: [
      { name: "start", type: "string", description: "First date, YYYY-MM-DD." },
      { name: "end", type: "string", description: "Second date, YYYY-MM-DD." },
    ],
    source: "import datetime\n\ndef days_between(start: str, end: str):\n    a = datetime.date.fromisoformat(start)\n    b = datetime.date.fromisoformat(end)\n    return (b - a).days\n",
  },
  {
    name: "max_of",
    description: "The largest of two numbers.",
    params: [
      { name: "a", type: "number", description: "First number." },
      { name: "b", type: "number", description: "Second number." },
    ],
    source: "def max_of(a, b):\n    return max(a, b)\n",
  },
  {
    name: "char_at",
    description: "The character at a 0-based position of a text.",
    params: [
      { name: "text", type: "string", description: "The text." },
      { name: "position", type: "integer", description: "0-based position." },
    ],
    source: "def char_at(text: str, position: int):\n    return str(text)[int(position)]\n",
  },
];

export const MAX_DISTRACTORS = DISTRACTORS.length;

/** The task's tools plus `k` distractors, shuffled so the needed tool is not always first. */
export function withDistractors(rng: Rng, tools: readonly ToolDef[], k: number): ToolDef[] {
  const names = new Set(tools.map((t) => t.name));
  const extra = rng.sample(DISTRACTORS.filter((d) => !names.has(d.name)), k);
  return rng.shuffle([...tools, ...extra]);
}
