/** What a reward function sees and returns. */
import type { GroundTruth } from "./squad.ts";

export interface RewardInput {
  /** The decoded prompt + response, special tokens kept, no padding. */
  text: string;
  groundTruth: GroundTruth;
  /** verl's `data_source` (e.g. `musique_re_call`). */
  dataSource?: string;
  extraInfo?: Record<string, unknown>;
}

export interface RewardResult {
  score: number;
  /** Why, in words (dumped with rollouts: `{data_source, sequences_str, ground_truth, score, reason}`). */
  reason: string;
  /** The answer the reward compared, when it got that far. */
  answer?: string;
}

export type RewardFn = (input: RewardInput) => RewardResult | Promise<RewardResult>;
