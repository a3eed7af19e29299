/**
 * ReSearch's reward: the response (after the assistant header, or after `Assistant:` for base-model
 * prompts) must have paired `<think>` tags, exactly one `<answer>…</answer>` holding a `\boxed{}`, and
 * `<search>…</search>` each followed by `<result>…</result>` in that order; it must end with EOS.
 * Then F1 of the boxed answer against the ground truths; F1 > 0 → F1, otherwise 0.1.
 */
import { END_OF_TEXT, IM_END, IM_START } from "../rollout/chatml.ts";
import { pyCount } from "../python/text.ts";
import { extractBoxed } from "./boxed.ts";
import { f1Score } from "./squad.ts";
import type { RewardInput, RewardResult } from "./types.ts";

/** undefined when the response's format is fine, else what is wrong. */
export function reSearchFormatError(response: string): string | undefined {
  if (pyCount(response, "<think>") !== pyCount(response, "</think>")) return "<think> </think> not paired";
  if (pyCount(response, "<think>") === 0) return "<think> or </think> not found";
  if (pyCount(response, "<answer>") !== 1 || pyCount(response, "</answer>") !== 1) return "<answer> or </answer> not found";
  let at = 0;
  for (;;) {
    const search = response.indexOf("<search>", at);
    if (search < 0) break;
    const result = response.indexOf("<result>", search);
    const searchEnd = response.indexOf("</search>", search);
    const resultEnd = response.indexOf("</result>", result);
    if (result < 0 || searchEnd < 0 || resultEnd < 0) return "search/result tags are incomplete";
    if (!(search < searchEnd && searchEnd < result && result < resultEnd)) return "search/result tags are nested in the wrong order";
    at = resultEnd;
  }
  const a = response.indexOf("<answer>");
  const b = response.indexOf("</answer>");
  if (a > b) return "<answer> must be before </answer>";
  const content = response.slice(a, b);
  if (!content.includes("\\boxed{") || !content.includes("}")) return "answer is missing \\boxed{} format";
  return undefined;
}

/** The response part of a ReSearch sequence (after the first assistant header, or after `Assistant:`). */
export function reSearchResponse(text: string): string {
  const header = `${IM_START}assistant\n`;
  const sep = text.includes(header) ? header : "Assistant:";
  const parts = text.split(sep);
  return parts.length > 1 ? parts[1]! : "";
}

export function reSearchReward(input: RewardInput, eos?: string): RewardResult {
  const end = eos ?? (input.text.includes(`${IM_START}assistant\n`) ? IM_END : END_OF_TEXT);
  let response = reSearchResponse(input.text);
  const formatError = reSearchFormatError(response);
  if (formatError) return { score: 0, reason: `bad format: ${formatError}` };
  if (!response.endsWith(end)) return { score: 0, reason: "over length" };
  response = response.slice(0, -end.length);
  const m = /<answer>([\s\S]*?)<\/answer>/.exec(response.trim());
  if (!m) return { score: 0, reason: "cannot extract answer" };
  const answer = extractBoxed(m[1]!);
  if (answer === undefined) return { score: 0, reason: "find box error" };
  const f1 = f1Score(answer, input.groundTruth);
  if (f1 > 0) return { score: f1, reason: `correct answer, get f1 score: ${f1}`, answer };
  return { score: 0.1, reason: `wrong answer but good format: ${answer}`, answer };
}
