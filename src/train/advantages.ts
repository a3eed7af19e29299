/**
 * Outcome advantages as verl computes them (core_algos.compute_*_outcome_advantage), per sequence and per
 * response token. verl does this arithmetic on float32 tensors, so every step here is rounded to float32
 * (Math.fround) where torch would round. The GRPO/RLOO group mean is summed in torch's own float32 order
 * (torchSumF32), so advantages match verl bit for bit — including its rounding noise: a group of identical
 * scores whose float32 sum is inexact (e.g. eight times 0.1) gets a std of ~1e-8 and advantages of a few
 * hundredths, not 0, in verl and here alike. The std is accumulated in float64 around that float32 mean, as
 * torch.std does. REINFORCE++'s batch whitening sums in float64 (torch's order there depends on the padded
 * layout and thread count), which agrees with verl to within a float32 ulp of each statistic.
 *
 * Estimators (SPEC §6, §6a):
 * - grpo: per group (same prompt uid) (score − mean) / (std + ε), unbiased std; a group of one gets mean 0,
 *   std 1; normByStd=false (Dr.GRPO) skips the division. Broadcast over the response mask.
 * - rloo: score·n/(n−1) − mean·n/(n−1) (leave-one-out baseline); a group of one keeps its score.
 * - reinforce_plus_plus: discounted token-level returns (score on the last valid token), reset where the
 *   mask is 0, then whitened over every masked token of the batch and masked.
 */
import { RecallError } from "../errors.ts";

export type AdvantageEstimator = "grpo" | "rloo" | "reinforce_plus_plus";
export type GroupKey = string | number;

export interface AdvantageOptions {
  estimator: AdvantageEstimator;
  /** algorithm.norm_adv_by_std_in_grpo (GRPO only); false = Dr.GRPO. */
  normByStd: boolean;
  /** Added to the group std before dividing (verl: 1e-6). */
  epsilon?: number;
  /** algorithm.gamma, REINFORCE++ only (verl: 1.0). */
  gamma?: number;
}

export interface OutcomeInput {
  /** One outcome score per sequence (the reward function's value). */
  scores: readonly number[];
  /** The prompt uid of each sequence: sequences with equal keys form one group. */
  groups: readonly GroupKey[];
  /** Per sequence, the response mask the advantage is broadcast over (verl: the response's attention mask). */
  responseMasks: readonly ArrayLike<number>[];
  /**
   * Token-level rewards (verl's token_level_rewards) when they are more than the score on the last token,
   * i.e. with algorithm.use_kl_in_reward (see klInReward in loss.ts). GRPO/RLOO then use their row sums,
   * as verl does; REINFORCE++ uses them token by token. When given, `scores` is not read.
   */
  tokenRewards?: readonly ArrayLike<number>[];
}

export interface OutcomeAdvantages {
  /** Per sequence, per response token; zero where the response mask is 0. */
  advantages: Float32Array[];
  /** verl's "returns": the advantages themselves for grpo/rloo, the undiscounted-by-whitening returns for REINFORCE++. */
  returns: Float32Array[];
}

const f32 = Math.fround;

function checkMask(mask: ArrayLike<number>, row: number): void {
  for (let t = 0; t < mask.length; t++) {
    const m = mask[t]!;
    if (m !== 0 && m !== 1) throw new RecallError(`advantages: response mask of sequence ${row} has ${m} at token ${t}; masks hold 0 or 1.`);
  }
}

/**
 * torch.sum of a contiguous 1-D float32 tensor on the CPU, in torch's order (aten SumKernel): below 8
 * elements, four interleaved accumulators with the tail added to the first; from 8 on, 8-lane vectors
 * accumulated four-way, the scalar tail summed first and then each lane added in turn. Exact for fewer than
 * 512 elements (past that torch switches to a cascade); groups of samples per prompt are far smaller.
 */
export function torchSumF32(xs: ArrayLike<number>): number {
  const n = xs.length;
  const add = (a: number, b: number) => f32(a + b);
  const LANES = 8, ILP = 4;
  if (n < LANES) {
    const acc = [0, 0, 0, 0];
    const rows = Math.floor(n / ILP);
    for (let j = 0; j < rows; j++) for (let k = 0; k < ILP; k++) acc[k] = add(acc[k]!, f32(xs[ILP * j + k]!));
    for (let i = rows * ILP; i < n; i++) acc[0] = add(acc[0]!, f32(xs[i]!));
    return add(add(add(acc[0]!, acc[1]!), acc[2]!), acc[3]!);
  }
  const vectors = Math.floor(n / LANES);
  const acc = Array.from({ length: ILP }, () => new Array<number>(LANES).fill(0));
  const rows = Math.floor(vectors / ILP);
  const addVector = (target: number[], v: number) => {
    for (let l = 0; l < LANES; l++) target[l] = add(target[l]!, f32(xs[v * LANES + l]!));
  };
  for (let j = 0; j < rows; j++) for (let k = 0; k < ILP; k++) addVector(acc[k]!, ILP * j + k);
  for (let v = rows * ILP; v < vectors; v++) addVector(acc[0]!, v);
  for (let k = 1; k < ILP; k++) for (let l = 0; l < LANES; l++) acc[0]![l] = add(acc[0]![l]!, acc[k]![l]!);
  let total = 0;
  for (let i = vectors * LANES; i < n; i++) total = add(total, f32(xs[i]!));
  for (let l = 0; l < LANES; l++) total = add(total, acc[0]![l]!);
  return total;
}

function groupIndices(groups: readonly GroupKey[]): Map<GroupKey, number[]> {
  const byKey = new Map<GroupKey, number[]>();
  groups.forEach((g, i) => {
    const list = byKey.get(g);
    if (list) list.push(i);
    else byKey.set(g, [i]);
  });
  return byKey;
}

/**
 * One advantage per sequence for the group-baseline estimators (grpo, rloo), in float32 as verl computes it.
 * `scores` are verl's per-sequence scores (token_level_rewards summed over the response).
 */
export function groupAdvantages(
  scores: readonly number[],
  groups: readonly GroupKey[],
  o: { estimator: "grpo" | "rloo"; normByStd: boolean; epsilon?: number },
): Float32Array {
  if (scores.length !== groups.length) throw new RecallError(`advantages: ${scores.length} scores but ${groups.length} group keys; give one key per sequence.`);
  const eps = f32(o.epsilon ?? 1e-6);
  const out = new Float32Array(scores.length);
  for (const [key, members] of groupIndices(groups)) {
    const s = members.map((i) => {
      const v = scores[i]!;
      if (!Number.isFinite(v)) throw new RecallError(`advantages: the score of sequence ${i} (group ${String(key)}) is ${v}; scores must be finite.`);
      return f32(v);
    });
    const n = s.length;
    // verl: a group of one has mean 0 and std 1 (its advantage is its own score).
    let mean = 0, std = 1;
    if (n > 1) {
      mean = f32(torchSumF32(s) / n);
      let ss = 0;
      for (const v of s) ss += (v - mean) * (v - mean);
      std = f32(Math.sqrt(ss / (n - 1)));
    }
    members.forEach((i, k) => {
      const v = s[k]!;
      if (o.estimator === "grpo") {
        const centered = f32(v - mean);
        out[i] = o.normByStd ? f32(centered / f32(std + eps)) : centered;
      } else if (n > 1) {
        // verl: scores[i] * n / (n - 1) - mean * n / (n - 1), each product and quotient a float32 op.
        out[i] = f32(f32(f32(v * n) / (n - 1)) - f32(f32(mean * n) / (n - 1)));
      } else {
        out[i] = v;
      }
    });
  }
  return out;
}

/**
 * verl's token_level_scores: each sequence's score on its last valid response token (the last index where the
 * mask is 1), zeros elsewhere. A sequence with an empty mask gets no score.
 */
export function placeScores(scores: readonly number[], masks: readonly ArrayLike<number>[]): Float32Array[] {
  if (scores.length !== masks.length) throw new RecallError(`advantages: ${scores.length} scores but ${masks.length} response masks; give one mask per sequence.`);
  return masks.map((mask, i) => {
    const row = new Float32Array(mask.length);
    for (let t = mask.length - 1; t >= 0; t--) {
      if (mask[t] !== 0) {
        row[t] = scores[i]!;
        break;
      }
    }
    return row;
  });
}

/** REINFORCE++: discounted returns per sequence (running return reset where the mask is 0), whitened over the batch. */
function reinforcePlusPlus(rewards: readonly ArrayLike<number>[], masks: readonly ArrayLike<number>[], gamma: number): OutcomeAdvantages {
  const g = f32(gamma);
  const returns = rewards.map((r, i) => {
    const mask = masks[i]!;
    const out = new Float32Array(mask.length);
    let running = 0;
    for (let t = mask.length - 1; t >= 0; t--) {
      running = f32(f32(r[t]!) + f32(g * running));
      out[t] = running;
      running = f32(running * mask[t]!);
    }
    return out;
  });
  // verl_F.masked_whiten(returns, mask): masked mean, unbiased masked variance, (x − mean)·rsqrt(var + 1e-8).
  let count = 0, sum = 0;
  returns.forEach((row, i) => {
    const mask = masks[i]!;
    for (let t = 0; t < row.length; t++) if (mask[t] !== 0) { count++; sum += row[t]!; }
  });
  if (count < 2) throw new RecallError(`advantages: REINFORCE++ whitens over the batch's response tokens and needs at least 2, got ${count}; use a larger batch.`);
  const mean = f32(sum / count);
  let ss = 0;
  returns.forEach((row, i) => {
    const mask = masks[i]!;
    for (let t = 0; t < row.length; t++) if (mask[t] !== 0) { const c = f32(row[t]! - mean); ss += f32(c * c); }
  });
  const variance = f32(f32(ss / count) * f32(count / (count - 1)));
  const invStd = f32(1 / Math.sqrt(f32(variance + f32(1e-8))));
  const advantages = returns.map((row, i) => {
    const mask = masks[i]!;
    const out = new Float32Array(row.length);
    for (let t = 0; t < row.length; t++) out[t] = mask[t] !== 0 ? f32(f32(row[t]! - mean) * invStd) : 0;
    return out;
  });
  return { advantages, returns };
}

/** Advantages and returns per sequence and response token, for the configured estimator (verl's compute_advantage). */
export function outcomeAdvantages(input: OutcomeInput, o: AdvantageOptions): OutcomeAdvantages {
  const { scores, groups, responseMasks: masks, tokenRewards } = input;
  const n = masks.length;
  if (groups.length !== n) throw new RecallError(`advantages: ${n} response masks but ${groups.length} group keys; give one key per sequence.`);
  if (tokenRewards === undefined && scores.length !== n) throw new RecallError(`advantages: ${n} response masks but ${scores.length} scores; give one score per sequence.`);
  masks.forEach(checkMask);
  if (tokenRewards !== undefined) {
    if (tokenRewards.length !== n) throw new RecallError(`advantages: ${n} response masks but ${tokenRewards.length} token-reward rows.`);
    tokenRewards.forEach((r, i) => {
      if (r.length !== masks[i]!.length) throw new RecallError(`advantages: sequence ${i} has ${r.length} token rewards but a response mask of ${masks[i]!.length}.`);
    });
  }
  if (o.estimator === "reinforce_plus_plus") {
    return reinforcePlusPlus(tokenRewards ?? placeScores(scores, masks), masks, o.gamma ?? 1.0);
  }
  // verl sums the token-level rewards over the response (float32 on its tensors).
  const seqScores = tokenRewards === undefined ? scores : tokenRewards.map((r) => {
    let s = 0;
    for (let t = 0; t < r.length; t++) s += f32(r[t]!);
    return f32(s);
  });
  const perSeq = groupAdvantages(seqScores, groups, { estimator: o.estimator, normByStd: o.normByStd, epsilon: o.epsilon });
  const advantages = masks.map((mask, i) => {
    const row = new Float32Array(mask.length);
    const a = perSeq[i]!;
    for (let t = 0; t < mask.length; t++) row[t] = mask[t] !== 0 ? a : 0;
    return row;
  });
  return { advantages, returns: advantages };
}
