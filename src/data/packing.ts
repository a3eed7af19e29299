/**
 * Packing trajectories into micro-batches for forward/backward passes. With a token budget (verl's
 * `use_dynamic_bsz` + `ppo_max_token_len_per_gpu`) sequences are spread over the fewest micro-batches whose
 * summed lengths each fit the budget, balanced by length (longest first into the lightest batch, as verl's
 * balanced partitioning aims for); without one, consecutive groups of a fixed number of sequences. Each
 * micro-batch lists its sequence indices in ascending order, so the same input always packs the same way.
 */
import { RecallError } from "../errors.ts";

export interface PackingOptions {
  /** Summed sequence lengths per micro-batch (dynamic batch size). */
  maxTokens?: number;
  /** Sequences per micro-batch (fixed batch size); used when maxTokens is not given. */
  maxSequences?: number;
}

function balancedPartition(lengths: readonly number[], bins: number): number[][] {
  const order = lengths.map((_, i) => i).sort((a, b) => lengths[b]! - lengths[a]! || a - b);
  const parts: number[][] = Array.from({ length: bins }, () => []);
  const load = new Array<number>(bins).fill(0);
  for (const i of order) {
    let best = 0;
    for (let b = 1; b < bins; b++) if (load[b]! < load[best]!) best = b;
    parts[best]!.push(i);
    load[best]! += lengths[i]!;
  }
  return parts.filter((p) => p.length > 0).map((p) => p.sort((a, b) => a - b));
}

/** Groups of sequence indices (each ascending); every index appears exactly once. */
export function packMicroBatches(lengths: readonly number[], o: PackingOptions): number[][] {
  if (lengths.length === 0) return [];
  if (o.maxTokens !== undefined) {
    const longest = Math.max(...lengths);
    if (longest > o.maxTokens) {
      throw new RecallError(`a sequence of ${longest} tokens does not fit the micro-batch token budget of ${o.maxTokens}`, {
        hint: "raise actor_rollout_ref.actor.ppo_max_token_len_per_gpu (at least max_prompt_length + max_response_length)",
      });
    }
    const total = lengths.reduce((a, b) => a + b, 0);
    for (let bins = Math.max(1, Math.ceil(total / o.maxTokens)); ; bins++) {
      const parts = balancedPartition(lengths, Math.min(bins, lengths.length));
      if (parts.every((p) => p.reduce((s, i) => s + lengths[i]!, 0) <= o.maxTokens!)) return parts;
    }
  }
  const size = o.maxSequences ?? lengths.length;
  if (!Number.isInteger(size) || size < 1) throw new RecallError(`micro-batch size must be a positive integer, got ${size}`);
  const out: number[][] = [];
  for (let i = 0; i < lengths.length; i += size) out.push(Array.from({ length: Math.min(size, lengths.length - i) }, (_, k) => i + k));
  return out;
}

/**
 * Micro-batches of right-padded sequences under a budget of padded tokens (sequences × longest ≤ maxTokens):
 * sequences taken longest first, so each micro-batch holds sequences of similar length (length buckets) and little
 * padding. Each sequence is its own row, so nothing attends across sequences. Deterministic; indices ascending per group.
 */
export function paddedMicroBatches(lengths: readonly number[], maxTokens: number): number[][] {
  if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new RecallError(`micro-batch token budget must be a positive integer, got ${maxTokens}`);
  const order = lengths.map((_, i) => i).sort((a, b) => lengths[b]! - lengths[a]! || a - b);
  const out: number[][] = [];
  let group: number[] = [];
  let width = 0;
  for (const i of order) {
    const len = lengths[i]!;
    if (len > maxTokens) throw new RecallError(`a sequence of ${len} tokens does not fit the micro-batch token budget of ${maxTokens}`);
    const w = Math.max(width, len);
    if (group.length > 0 && (group.length + 1) * w > maxTokens) {
      out.push(group.sort((a, b) => a - b));
      group = [];
      width = 0;
    }
    group.push(i);
    width = Math.max(width, len);
  }
  if (group.length > 0) out.push(group.sort((a, b) => a - b));
  return out;
}
