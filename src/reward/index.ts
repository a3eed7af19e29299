/**
 * Reward kinds and how one is chosen. `auto` picks by verl's `data_source`: names containing `re_call`
 * get ReCall's reward, `re_search`/`research` ReSearch's, anything else F1 without a format gate.
 * A kind of the form `module:PATH` (or a path ending in .js/.ts/.mjs) loads a user scorer.
 */
import { RecallError } from "../errors.ts";
import { boxedExactMatchReward, f1Reward } from "./answer_only.ts";
import { loadCustomReward } from "./custom.ts";
import { reCallReward } from "./re_call.ts";
import { reSearchReward } from "./re_search.ts";
import type { RewardFn, RewardInput } from "./types.ts";

export type { RewardFn, RewardInput, RewardResult } from "./types.ts";
export { reCallReward, reCallFormatError, assistantSpans } from "./re_call.ts";
export { reSearchReward, reSearchFormatError } from "./re_search.ts";
export { boxedExactMatchReward, f1Reward, finalTurn } from "./answer_only.ts";
export { extractBoxed } from "./boxed.ts";
export { normalizeAnswer, exactMatch, substringMatch, tokenScores, f1Score } from "./squad.ts";

export const REWARD_KINDS = ["auto", "re_call", "research", "boxed_em", "f1"] as const;
export type BuiltinRewardKind = (typeof REWARD_KINDS)[number];

const BUILTIN: Record<Exclude<BuiltinRewardKind, "auto">, RewardFn> = {
  re_call: (i) => reCallReward(i),
  research: (i) => reSearchReward(i),
  boxed_em: boxedExactMatchReward,
  f1: f1Reward,
};

/** The builtin kind `auto` resolves to for a data source. */
export function kindForDataSource(dataSource: string | undefined): Exclude<BuiltinRewardKind, "auto"> {
  const ds = (dataSource ?? "").toLowerCase();
  if (ds.includes("re_call")) return "re_call";
  if (ds.includes("re_search") || ds.includes("research")) return "research";
  return "f1";
}

function isModuleSpec(kind: string): boolean {
  return kind.startsWith("module:") || /\.(m?[jt]s|js)$/.test(kind);
}

/** A reward function for a kind name (see REWARD_KINDS) or a scorer module. */
export async function createReward(kind: string): Promise<RewardFn> {
  if (isModuleSpec(kind)) return loadCustomReward(kind.startsWith("module:") ? kind.slice("module:".length) : kind);
  if (kind === "auto") return (i: RewardInput) => BUILTIN[kindForDataSource(i.dataSource)](i);
  if (kind in BUILTIN) return BUILTIN[kind as Exclude<BuiltinRewardKind, "auto">];
  throw new RecallError(`unknown reward kind '${kind}'`, { hint: `one of ${REWARD_KINDS.join(", ")}, or module:PATH to a JS/TS scorer` });
}
