/**
 * Search tools answered in this process from a `Retriever`, with no sandbox and no HTTP hop:
 *
 * - `WikipediaSearchTool` — ReCall's `wikipedia_search(query, top_n=5)`. It answers exactly what the
 *   sandbox answers when it runs ReCall's Python tool (spec/wikipedia_search_env.py) against a retriever
 *   server: the passages' `contents`, each followed by a blank line, stripped, then flattened as
 *   `result: \n…`; `'invalid query'` for an empty query; and Python's exception text for the common
 *   mistakes (unknown tool name, unknown or missing argument, and — in ReCall's evaluation loop — a call
 *   whose JSON did not parse).
 * - `PlainSearchTool` — ReSearch's `<search>` tool: the same passage text, unflattened.
 */
import { pyStrip } from "../python/text.ts";
import type { PyValue } from "../python/value.ts";
import { flattenAnswer } from "../sandbox/flatten.ts";
import { callSyntaxError, type RetrievedDoc, type ToolRunner, type ToolRunResult, type UnparsedToolCall, type ValidToolCall } from "./tools.ts";

/** What these tools need of a retriever (src/retrieval's `Retriever` has it). */
export interface SearchBackend {
  search(query: string, topN: number): Promise<{ docs: RetrievedDoc[] }>;
}

/** The text ReCall's tool builds from the passages: each `contents` plus a blank line, stripped. */
export function passagesText(docs: readonly RetrievedDoc[]): string {
  return pyStrip(docs.map((d) => `${d.contents}\n\n`).join(""));
}

const error = (message: string): ToolRunResult => ({ result: flattenAnswer({ output: "", result: null, error: message }) });

function asTopN(v: PyValue): number | undefined {
  if (typeof v === "boolean") return v ? 1 : 0;
  if (typeof v === "string" && /^\s*[-+]?\d+\s*$/.test(v)) return Number(v.trim());
  if (v !== null && typeof v === "object" && !Array.isArray(v) && (v.py === "int" || v.py === "float")) {
    const n = Number(v.value);
    return Number.isFinite(n) ? Math.trunc(n) : undefined;
  }
  return undefined;
}

export class WikipediaSearchTool implements ToolRunner {
  readonly reportsDocs = true;
  readonly name: string;
  private readonly defaultTopN: number;

  constructor(private readonly retriever: SearchBackend, opts: { name?: string; defaultTopN?: number } = {}) {
    this.name = opts.name ?? "wikipedia_search";
    this.defaultTopN = opts.defaultTopN ?? 5;
  }

  async run(call: ValidToolCall): Promise<ToolRunResult> {
    if (call.name !== this.name) {
      return /^[A-Za-z_][A-Za-z0-9_]*$/.test(call.name) ? error(`name '${call.name}' is not defined`) : error(callSyntaxError("invalid syntax"));
    }
    for (const k of call.args.entries.keys()) {
      if (k !== "query" && k !== "top_n") return error(`${this.name}() got an unexpected keyword argument '${k}'`);
    }
    if (!call.args.entries.has("query")) return error(`${this.name}() missing 1 required positional argument: 'query'`);
    const q = call.args.entries.get("query")!;
    if (q === "") return { result: flattenAnswer({ output: "", result: "invalid query", error: null }) };
    // The retriever server validates `query: str` and `top_n: int`; anything else comes back as an error
    // body, and the tool then fails iterating over it.
    const query = typeof q === "string" ? q : q !== null && typeof q === "object" && !Array.isArray(q) && q.py !== "dict" ? String(q.value) : undefined;
    const topN = call.args.entries.has("top_n") ? asTopN(call.args.entries.get("top_n")!) : this.defaultTopN;
    if (query === undefined || topN === undefined) return error("string indices must be integers");
    const { docs } = await this.retriever.search(query, Math.max(0, topN));
    const text = passagesText(docs);
    return { result: flattenAnswer({ output: "", result: text, error: null }), docs };
  }

  /**
   * `response = Parse tool call failed: …` is not Python: whatever the failure reason, CPython rejects it
   * at the word after `Parse`, so the sandbox answers this SyntaxError.
   */
  async runUnparsed(_call: UnparsedToolCall): Promise<ToolRunResult> {
    return error(callSyntaxError("invalid syntax"));
  }
}

/** ReSearch's search: the query is the text inside `<search>…</search>`; the answer is the passage text. */
export class PlainSearchTool implements ToolRunner {
  readonly reportsDocs = true;
  constructor(private readonly retriever: SearchBackend, private readonly topN: number) {}

  async run(call: ValidToolCall): Promise<ToolRunResult> {
    const q = call.args.entries.get("query");
    const query = typeof q === "string" ? pyStrip(q) : "";
    if (query === "") return { result: "", docs: [] };
    const { docs } = await this.retriever.search(query, this.topN);
    return { result: passagesText(docs), docs };
  }
}
