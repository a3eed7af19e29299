/**
 * Rewards without a format gate, for data that is not in ReCall's format or to measure answers alone:
 * - `boxedExactMatchReward` — 1 when the last `\boxed{}` of the final turn equals a ground truth after
 *   normalisation, else 0;
 * - `f1Reward` — token F1 of the final answer (the last `\boxed{}` of the final turn, or that turn's text
 *   without its `<think>…</think>` when it has no box) against the ground truths.
 */
import { assistantSpans } from "./re_call.ts";
import { extractBoxed } from "./boxed.ts";
import { exactMatch, f1Score } from "./squad.ts";
import type { RewardInput, RewardResult } from "./types.ts";
import { pyStrip } from "../python/text.ts";

/** The final assistant turn (or the whole text when it is not ChatML). */
export function finalTurn(text: string): string {
  const spans = assistantSpans(text);
  return spans.length > 0 ? spans[spans.length - 1]! : text;
}

export function boxedExactMatchReward(input: RewardInput): RewardResult {
  const answer = extractBoxed(finalTurn(input.text));
  if (answer === undefined) return { score: 0, reason: "no \\boxed answer" };
  const em = exactMatch(answer, input.groundTruth);
  return { score: em, reason: em ? `exact match: ${answer}` : `no match: ${answer}`, answer };
}

export function f1Reward(input: RewardInput): RewardResult {
  const turn = finalTurn(input.text);
  const answer = extractBoxed(turn) ?? pyStrip(turn.replace(/<think>[\s\S]*?<\/think>/g, ""));
  const f1 = f1Score(answer, input.groundTruth);
  return { score: f1, reason: `f1 score: ${f1}`, answer };
}
