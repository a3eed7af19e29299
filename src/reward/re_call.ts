/**
 * ReCall's reward (SPEC section 2), for data sources whose name contains `re_call`. In order:
 * 1. the text must end with EOS `<|im_end|>` (truncation, turn cap, response budget and an illegal
 *    `<|im_start|>` all fail here) → else 0;
 * 2. format: every assistant span (`<|im_start|>assistant\n` … next `<|im_end|>`, stripped) has equal
 *    `<think>`/`</think>` counts (at least one), equal `<tool_call>`/`</tool_call>` counts, tool-call bodies
 *    holding `"name"` and `"arguments"` and parsing as JSON; the last span contains `\box` → else 0;
 * 3. answer: the last `\boxed{}` of the last span → else 0;
 * 4–5. max token F1 over the ground truths; F1 > 0 → F1, otherwise 0.1 (well-formed but wrong).
 */
import { IM_END, IM_START } from "../rollout/chatml.ts";
import { pyJsonLoads } from "../python/json.ts";
import { pyCount, pyStrip } from "../python/text.ts";
import { extractBoxed } from "./boxed.ts";
import { f1Score } from "./squad.ts";
import type { RewardInput, RewardResult } from "./types.ts";

const ASSISTANT_SPAN = new RegExp(`${escape(IM_START)}assistant\\n([\\s\\S]*?)${escape(IM_END)}`, "g");
function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** The stripped assistant spans of a ChatML text. */
export function assistantSpans(text: string): string[] {
  return [...text.matchAll(ASSISTANT_SPAN)].map((m) => pyStrip(m[1]!));
}

/** Step 2 of the reward: undefined when the format is fine, else what is wrong. */
export function reCallFormatError(text: string): string | undefined {
  const spans = assistantSpans(text);
  if (spans.length === 0) return "no assistant turn";
  for (const [i, span] of spans.entries()) {
    const thinks = pyCount(span, "<think>");
    if (thinks !== pyCount(span, "</think>") || thinks < 1) return `turn ${i + 1}: <think> and </think> unbalanced or missing`;
    if (pyCount(span, "<tool_call>") !== pyCount(span, "</tool_call>")) return `turn ${i + 1}: <tool_call> and </tool_call> unbalanced`;
    for (const m of span.matchAll(/<tool_call>([\s\S]*?)<\/tool_call>/g)) {
      const body = m[1]!;
      if (!body.includes('"name"') || !body.includes('"arguments"')) return `turn ${i + 1}: tool call without "name" and "arguments"`;
      try {
        pyJsonLoads(body);
      } catch {
        return `turn ${i + 1}: tool call is not valid JSON`;
      }
    }
  }
  if (!spans[spans.length - 1]!.includes("\\box")) return "last turn has no \\boxed answer";
  return undefined;
}

export function reCallReward(input: RewardInput, eos = IM_END): RewardResult {
  const { text } = input;
  if (!text.endsWith(eos)) return { score: 0, reason: "over length" };
  const formatError = reCallFormatError(text);
  if (formatError) return { score: 0, reason: `bad format: ${formatError}` };
  const spans = assistantSpans(text);
  const answer = extractBoxed(spans[spans.length - 1]!);
  if (answer === undefined) return { score: 0, reason: "cannot extract answer" };
  const f1 = f1Score(answer, input.groundTruth);
  if (f1 > 0) return { score: f1, reason: `correct answer, get f1 score: ${f1}`, answer };
  return { score: 0.1, reason: `wrong answer but good format: ${answer}`, answer };
}
