/**
 * Conversation protocols: what counts as a tool request in a finished turn, and what text answers it.
 *
 * - `RE_CALL` (SPEC section 1): a turn ends at EOS; its `<tool_call>` JSON blocks are the requests; the
 *   answer is `\n<|im_start|>user\n<tool_response>…</tool_response>\n…<|im_end|>\n<|im_start|>assistant\n<think>`.
 *   A turn with no valid calls is the final answer.
 * - `RE_SEARCH` (ReSearch): a turn that ends with `</search>` asks for a search on the text since the last
 *   `<search>`; the answer ` <result>\n{passages}\n</result>` is appended and generation continues in the
 *   same assistant message. A turn that ends at EOS is the final answer.
 */
import { reCallToolResponseBlock } from "./chatml.ts";
import { pyReprStr } from "../python/repr.ts";
import { pyStrip } from "../python/text.ts";
import { pyDict } from "../python/value.ts";
import { toolCallsOf, type ToolCall } from "./tool_calls.ts";
import type { TurnEnd } from "./turn_end.ts";

export interface ToolResultText {
  call: ToolCall;
  /** RESULT for this call. */
  result: string;
}

export interface ConversationProtocol {
  readonly name: string;
  /** Stop strings after which tools run (besides EOS). */
  readonly toolStops: readonly string[];
  /** The tool requests of a finished turn (text as sampled, stop included); [] = this turn is final. */
  callsOf(turn: string, end: TurnEnd): ToolCall[];
  /** The text appended after a turn's tool results. */
  renderResults(results: readonly ToolResultText[]): string;
  /** For servers that trim stops without saying which: the stop a turn most likely ended on. */
  inferTrimmedStop?(turn: string): string | undefined;
}

export const RE_CALL: ConversationProtocol = {
  name: "re-call",
  toolStops: [],
  callsOf: (turn, end) => (end.kind === "eos" ? toolCallsOf(turn) : []),
  renderResults: (results) => reCallToolResponseBlock(results.map((r) => ({ callText: r.call.text, result: r.result }))),
};

export const SEARCH_OPEN = "<search>";
export const SEARCH_CLOSE = "</search>";

export const RE_SEARCH: ConversationProtocol = {
  name: "research",
  toolStops: [SEARCH_CLOSE],
  callsOf(turn, end) {
    if (end.kind !== "tool_stop" || end.stop !== SEARCH_CLOSE) return [];
    const close = turn.lastIndexOf(SEARCH_CLOSE);
    const open = turn.lastIndexOf(SEARCH_OPEN, close);
    const query = open >= 0 ? pyStrip(turn.slice(open + SEARCH_OPEN.length, close)) : "";
    return [{ ok: true, text: query, name: "search", args: pyDict([["query", query]]), expr: `search(query=${pyReprStr(query)})` }];
  },
  renderResults: (results) => results.map((r) => ` <result>\n${r.result}\n</result>`).join(""),
  inferTrimmedStop(turn) {
    return turn.lastIndexOf(SEARCH_OPEN) > turn.lastIndexOf(SEARCH_CLOSE) ? SEARCH_CLOSE : undefined;
  },
};
