/**
 * A golden trace written out in ReCall's exact conversation format (SPEC §1): assistant turns
 * `<think>…</think>` + `<tool_call>\n{json}\n</tool_call>` blocks, tool results as `<tool_response>` user turns,
 * a final turn with `\boxed{}`. The same trace gives the full ChatML text a rollout would produce (for the reward
 * check) and the role/content messages of an SFT conversation; rendering those messages as ChatML gives that text.
 */
import { IM_END, reCallPrompt, reCallToolResponseBlock, THINK_OPEN, type ChatMessage, type ToolResponsePart } from "../rollout/chatml.ts";
import { pyJsonDumps } from "../python/json.ts";
import { fromJsValue } from "../python/value.ts";
import type { Candidate, GoldenCall, GoldenTrace, GoldenTurn } from "./types.ts";

/** CALL_JSON_TEXT: the call as the model writes it between the `<tool_call>` tags. */
export function callJsonText(call: Pick<GoldenCall, "name" | "arguments">): string {
  return pyJsonDumps(fromJsValue({ name: call.name, arguments: call.arguments }));
}

/** An assistant turn with calls, as the model writes it (starting with `<think>`, without `<|im_end|>`). */
export function toolTurnText(turn: GoldenTurn): string {
  return `${THINK_OPEN}${turn.think}</think>\n` + turn.calls.map((c) => `<tool_call>\n${callJsonText(c)}\n</tool_call>`).join("\n");
}

export function finalTurnText(trace: GoldenTrace): string {
  return `${THINK_OPEN}${trace.finalThink}</think>\n${trace.finalText}`;
}

function responseParts(turn: GoldenTurn): ToolResponsePart[] {
  return turn.calls.map((c) => ({ callText: callJsonText(c), result: c.result }));
}

/** The user turn that answers a turn's calls: the `<tool_response>` blocks, each followed by a newline. */
export function toolResponseContent(turn: GoldenTurn): string {
  return responseParts(turn).map((p) => `<tool_response>${p.callText}\n${p.result}\n</tool_response>\n`).join("");
}

/**
 * The decoded prompt + response of a rollout that follows the trace: ReCall's prompt (system template with the
 * schemas, the question, `<think>`), each turn closed with `<|im_end|>` and answered with the tool-response block.
 */
export function conversationText(c: Pick<Candidate, "question" | "funcSchemas" | "golden">): string {
  let text = reCallPrompt(c.question, c.funcSchemas);
  for (const turn of c.golden.turns) text += toolTurnText(turn).slice(THINK_OPEN.length) + IM_END + reCallToolResponseBlock(responseParts(turn));
  return text + finalTurnText(c.golden).slice(THINK_OPEN.length) + IM_END;
}

/**
 * The conversation as role/content messages (TRL / LLaMA-Factory form). `system` is the system turn's text (ReCall's
 * template with the sample's schemas is `reCallSystemPrompt(funcSchemas)`); undefined leaves the system turn out.
 */
export function sftMessages(c: Pick<Candidate, "question" | "funcSchemas" | "golden">, system?: string): ChatMessage[] {
  const messages: ChatMessage[] = [...(system === undefined ? [] : [{ role: "system" as const, content: system }]), { role: "user", content: c.question }];
  for (const turn of c.golden.turns) {
    messages.push({ role: "assistant", content: toolTurnText(turn) });
    messages.push({ role: "user", content: toolResponseContent(turn) });
  }
  messages.push({ role: "assistant", content: finalTurnText(c.golden) });
  return messages;
}

/** The final turn of a trace in either style. */
export function finalTurn(style: "natural" | "compact", answer: string, because: string): Pick<GoldenTrace, "answer" | "finalThink" | "finalText"> {
  if (style === "compact") return { answer, finalThink: "", finalText: `\\boxed{${answer}}` };
  return { answer, finalThink: ` ${because} `, finalText: `The answer is \\[ \\boxed{${answer}} \\].` };
}
