/**
 * The actor's loss for one micro-batch and its exact gradient with respect to each response token's log-prob
 * and entropy, as verl's dp_actor.update_policy computes it (SPEC §6a), plus the reward-side pieces (KL in the
 * reward, DAPO overlong shaping).
 *
 *   loss = scale · (pg − entropyCoeff · agg(entropy) + klCoef · agg(kl(logp, ref)))
 *
 * `compat` picks between the two verls the SPEC describes:
 * - "recall" (ReCall's vendored verl): the policy term is always token-mean (its actor never passes
 *   loss_agg_mode to the policy loss); only the k3 value is clamped (±10); masked means divide by the raw
 *   token count, so an empty micro-batch (token-mean) or an empty row (seq-mean-token-mean) gives NaN, and
 *   seq-mean-token-sum averages over every row.
 * - "verl" (upstream): all three terms follow loss_agg_mode; the log-ratio and the k3 exponent are clamped to
 *   ±20; fully masked rows are left out of the sequence means and an empty micro-batch gives 0.
 * In both, tokens whose mask is 0 contribute nothing, whatever their values (verl multiplies by the mask;
 * upstream also zeroes them with torch.where first).
 *
 * Gradients follow autograd's conventions exactly: clamp passes the gradient on [lo, hi] inclusive and 0
 * outside; max/min of two equal values send half of the gradient to each.
 */
import { RecallError } from "../errors.ts";

export type KlType = "kl" | "abs" | "mse" | "low_var_kl";
export type LossAggMode = "token-mean" | "seq-mean-token-sum" | "seq-mean-token-mean" | "seq-mean-token-sum-norm";
export type LossCompat = "recall" | "verl";

export const LOSS_AGG_MODES: readonly LossAggMode[] = ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"];
export const KL_TYPES: readonly KlType[] = ["kl", "abs", "mse", "low_var_kl"];

/** k3's value is clamped to ±10 in both verls; upstream also clamps ref − logp to ±20 before the exp. */
const K3_VALUE_CLAMP = 10;
const LOG_RATIO_CLAMP = 20;

/** Derivative of clamp(x, lo, hi) as autograd computes it: 1 on [lo, hi] (inclusive), 0 outside. */
function clampSlope(x: number, lo: number, hi: number): number {
  return x >= lo && x <= hi ? 1 : 0;
}

function clamp(x: number, lo: number, hi: number): number {
  return x < lo ? lo : x > hi ? hi : x;
}

/** One token's KL estimate and its derivative with respect to logp (verl's core_algos.kl_penalty). */
function klTerm(logp: number, ref: number, type: KlType, compat: LossCompat): { value: number; slope: number } {
  const k1 = logp - ref;
  switch (type) {
    case "kl":
      return { value: k1, slope: 1 };
    case "abs":
      return { value: Math.abs(k1), slope: Math.sign(k1) };
    case "mse":
      return { value: 0.5 * k1 * k1, slope: k1 };
    case "low_var_kl": {
      // k3 = exp(ref − logp) − (ref − logp) − 1
      const raw = ref - logp;
      const d = compat === "verl" ? clamp(raw, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP) : raw;
      const dSlope = compat === "verl" ? -clampSlope(raw, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP) : -1; // ∂d/∂logp
      const k3 = Math.exp(d) - d - 1;
      const value = clamp(k3, -K3_VALUE_CLAMP, K3_VALUE_CLAMP);
      const slope = clampSlope(k3, -K3_VALUE_CLAMP, K3_VALUE_CLAMP) * (Math.exp(d) - 1) * dSlope;
      return { value, slope };
    }
  }
}

/** Per-token KL estimate between the policy and the reference (kl/k1, abs, mse/k2, low_var_kl/k3). */
export function klPenalty(logprob: ArrayLike<number>, refLogprob: ArrayLike<number>, type: KlType, compat: LossCompat = "recall"): Float32Array {
  if (logprob.length !== refLogprob.length) throw new RecallError(`kl: ${logprob.length} log-probs but ${refLogprob.length} reference log-probs.`);
  const out = new Float32Array(logprob.length);
  for (let t = 0; t < logprob.length; t++) out[t] = klTerm(logprob[t]!, refLogprob[t]!, type, compat).value;
  return out;
}

/**
 * The weight of each token in agg(values) = Σ w·v for a loss_agg_mode (verl's core_algos.agg_loss), or NaN
 * where ReCall's verl divides 0 by 0. Weights are 0 wherever the mask is 0.
 */
function aggregationWeights(masks: readonly ArrayLike<number>[], mode: LossAggMode, horizon: number | undefined, compat: LossCompat): { weights: Float64Array[]; nan: boolean } {
  const counts = masks.map((m) => {
    let c = 0;
    for (let t = 0; t < m.length; t++) c += m[t]!;
    return c;
  });
  const rows = masks.length;
  const nonEmpty = counts.filter((c) => c > 0).length;
  const total = counts.reduce((a, b) => a + b, 0);
  let nan = false;
  let perRow: (i: number) => number; // weight of a masked-in token of row i
  switch (mode) {
    case "token-mean":
      if (total === 0) nan = compat === "recall";
      perRow = () => (total > 0 ? 1 / total : 0);
      break;
    case "seq-mean-token-sum": {
      // ReCall: torch.mean over every row; upstream: masked mean over rows with at least one token.
      const denom = compat === "recall" ? rows : nonEmpty;
      if (denom === 0) nan = compat === "recall";
      perRow = () => (denom > 0 ? 1 / denom : 0);
      break;
    }
    case "seq-mean-token-mean": {
      const denom = compat === "recall" ? rows : nonEmpty;
      if (compat === "recall" && (rows === 0 || nonEmpty < rows)) nan = true;
      perRow = (i) => (denom > 0 && counts[i]! > 0 ? 1 / (counts[i]! * denom) : 0);
      break;
    }
    case "seq-mean-token-sum-norm": {
      if (horizon === undefined || !(horizon > 0)) {
        throw new RecallError(`loss: loss_agg_mode seq-mean-token-sum-norm divides by the padded response width (data.max_response_length); pass it as horizon (got ${horizon}).`);
      }
      perRow = () => 1 / horizon;
      break;
    }
  }
  const weights = masks.map((m, i) => {
    const w = new Float64Array(m.length);
    const rowWeight = perRow(i);
    for (let t = 0; t < m.length; t++) w[t] = m[t]! * rowWeight;
    return w;
  });
  return { weights, nan };
}

function checkMasks(masks: readonly ArrayLike<number>[], what: string): void {
  masks.forEach((m, i) => {
    for (let t = 0; t < m.length; t++) {
      if (m[t] !== 0 && m[t] !== 1) throw new RecallError(`${what}: mask of sequence ${i} has ${m[t]} at token ${t}; masks hold 0 or 1.`);
    }
  });
}

function weightedSum(values: readonly ArrayLike<number>[], weights: readonly Float64Array[]): number {
  let s = 0;
  values.forEach((v, i) => {
    const w = weights[i]!;
    for (let t = 0; t < w.length; t++) if (w[t] !== 0) s += w[t]! * v[t]!;
  });
  return s;
}

/**
 * Aggregates per-token values into one number (verl's agg_loss). `horizon` is the padded response width verl
 * divides by in seq-mean-token-sum-norm (data.max_response_length); `compat` picks ReCall's or upstream's
 * handling of empty rows (see the file comment).
 */
export function aggregateLoss(values: readonly ArrayLike<number>[], masks: readonly ArrayLike<number>[], mode: LossAggMode, horizon?: number, compat: LossCompat = "verl"): number {
  if (values.length !== masks.length) throw new RecallError(`loss: ${values.length} value rows but ${masks.length} mask rows.`);
  values.forEach((v, i) => {
    if (v.length !== masks[i]!.length) throw new RecallError(`loss: sequence ${i} has ${v.length} values but a mask of ${masks[i]!.length}.`);
  });
  checkMasks(masks, "loss");
  const { weights, nan } = aggregationWeights(masks, mode, horizon, compat);
  return nan ? NaN : weightedSum(values, weights);
}

export interface PolicyMicroBatch {
  /** Per sequence, response tokens only: log-probs under the current policy. */
  logprob: readonly ArrayLike<number>[];
  /** Log-probs recorded before the update (verl's old_log_probs). */
  oldLogprob: readonly ArrayLike<number>[];
  /** Reference policy log-probs; needed when useKlLoss. */
  refLogprob?: readonly ArrayLike<number>[];
  /** Per-token entropy of the current policy. */
  entropy: readonly ArrayLike<number>[];
  advantages: readonly ArrayLike<number>[];
  /** The loss mask: 1 on sampled tokens only. */
  mask: readonly ArrayLike<number>[];
}

export interface PolicyLossSettings {
  clipRatioLow: number;
  clipRatioHigh: number;
  /** Dual-clip bound for negative advantages (verl's clip_ratio_c, > 1). */
  clipRatioC: number;
  lossAggMode: LossAggMode;
  compat: LossCompat;
  entropyCoeff: number;
  useKlLoss: boolean;
  klCoef: number;
  klType: KlType;
  /** Padded response width, for seq-mean-token-sum-norm. */
  horizon?: number;
}

export interface PolicyLossMetrics {
  pg_loss: number;
  pg_clipfrac: number;
  pg_clipfrac_lower: number;
  ppo_kl: number;
  entropy: number;
  kl_loss: number;
}

export interface PolicyLossResult {
  /** scale · (pg − entropyCoeff·entropy + klCoef·kl). */
  loss: number;
  /** Unscaled terms, as verl logs them per micro-batch. */
  metrics: PolicyLossMetrics;
  /** ∂loss/∂logprob per token (the scale included); 0 where the mask is 0. */
  dLogprob: Float32Array[];
  /** ∂loss/∂entropy per token (the scale included); 0 where the mask is 0. */
  dEntropy: Float32Array[];
}

/** autograd's gradient of max(a, b) into a (into b: the complement): all, none, or half on a tie. */
function maxShare(a: number, b: number): number {
  return a > b ? 1 : a < b ? 0 : 0.5;
}

/**
 * One token of verl's clipped surrogate with clip-higher and dual clip:
 *   l1 = −A·r, l2 = −A·clip(r, 1−low, 1+high), c1 = max(l1, l2), l3 = −A·c, loss = A < 0 ? min(l3, c1) : c1
 * with r = exp(logp − old) (upstream clamps logp − old to ±20 first). Returns the loss, its derivative with
 * respect to logp, and which clip branches were taken (for the clip fractions).
 */
function surrogateTerm(logp: number, old: number, a: number, s: PolicyLossSettings): { value: number; slope: number; clipped: boolean; clippedLower: boolean; negKl: number } {
  const raw = logp - old;
  const negKl = s.compat === "verl" ? clamp(raw, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP) : raw;
  const dNegKl = s.compat === "verl" ? clampSlope(raw, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP) : 1;
  const r = Math.exp(negKl);
  const dr = r * dNegKl; // ∂r/∂logp
  const lo = 1 - s.clipRatioLow, hi = 1 + s.clipRatioHigh;
  const l1 = -a * r, dl1 = -a * dr;
  const l2 = -a * clamp(r, lo, hi), dl2 = -a * clampSlope(r, lo, hi) * dr;
  const share1 = maxShare(l1, l2);
  const c1 = Math.max(l1, l2);
  const dc1 = share1 * dl1 + (1 - share1) * dl2;
  const clipped = l2 > l1;
  if (!(a < 0)) return { value: c1, slope: dc1, clipped, clippedLower: false, negKl };
  const l3 = -a * s.clipRatioC;
  // min(l3, c1): the gradient reaches c1 when c1 < l3, half of it on a tie.
  const shareC1 = c1 < l3 ? 1 : c1 > l3 ? 0 : 0.5;
  return { value: Math.min(l3, c1), slope: shareC1 * dc1, clipped, clippedLower: c1 > l3, negKl };
}

function checkMicroBatch(mb: PolicyMicroBatch, s: PolicyLossSettings): void {
  const n = mb.mask.length;
  const fields: [string, readonly ArrayLike<number>[] | undefined][] = [
    ["logprob", mb.logprob], ["oldLogprob", mb.oldLogprob], ["entropy", mb.entropy], ["advantages", mb.advantages],
    ["refLogprob", s.useKlLoss ? mb.refLogprob : []],
  ];
  for (const [name, rows] of fields) {
    if (rows === undefined) throw new RecallError(`loss: use_kl_loss is on but the micro-batch has no reference log-probs.`);
    if (name === "refLogprob" && !s.useKlLoss) continue;
    if (rows.length !== n) throw new RecallError(`loss: micro-batch has ${n} mask rows but ${rows.length} ${name} rows.`);
    rows.forEach((row, i) => {
      if (row.length !== mb.mask[i]!.length) throw new RecallError(`loss: sequence ${i} has ${row.length} ${name} values but a mask of ${mb.mask[i]!.length}.`);
    });
  }
  checkMasks(mb.mask, "loss");
  if (!(s.clipRatioC > 1)) throw new RecallError(`loss: clip_ratio_c must be greater than 1 (dual-clip PPO), got ${s.clipRatioC}.`);
}

/**
 * The actor loss of one micro-batch, verl's metrics for it, and the gradient of the scaled loss with respect to
 * each token's log-prob and entropy (what the model's backward pass starts from). `scale` is the micro-batch's
 * weight in its mini-batch (SPEC §6a: micro_size / ppo_mini_batch_size, or 1 / gradient_accumulation).
 */
export function policyLossAndGrads(mb: PolicyMicroBatch, s: PolicyLossSettings, scale: number): PolicyLossResult {
  checkMicroBatch(mb, s);
  const masks = mb.mask;
  const termAgg = aggregationWeights(masks, s.lossAggMode, s.horizon, s.compat);
  const tokenMean = aggregationWeights(masks, "token-mean", undefined, s.compat);
  // ReCall's actor never passes loss_agg_mode to the policy loss: it stays token-mean there.
  const pgAgg = s.compat === "recall" ? tokenMean : termAgg;

  let pg = 0, clipfrac = 0, clipfracLower = 0, ppoKl = 0, ent = 0, kl = 0;
  const dLogprob = masks.map((m) => new Float32Array(m.length));
  const dEntropy = masks.map((m) => new Float32Array(m.length));
  for (let i = 0; i < masks.length; i++) {
    const m = masks[i]!, wPg = pgAgg.weights[i]!, wTerm = termAgg.weights[i]!, wMean = tokenMean.weights[i]!;
    const logp = mb.logprob[i]!, old = mb.oldLogprob[i]!, adv = mb.advantages[i]!, entropy = mb.entropy[i]!;
    const ref = s.useKlLoss ? mb.refLogprob![i]! : undefined;
    for (let t = 0; t < m.length; t++) {
      if (m[t] === 0) continue;
      const sur = surrogateTerm(logp[t]!, old[t]!, adv[t]!, s);
      pg += wPg[t]! * sur.value;
      clipfrac += wMean[t]! * (sur.clipped ? 1 : 0);
      clipfracLower += wMean[t]! * (sur.clippedLower ? 1 : 0);
      ppoKl += wMean[t]! * -sur.negKl;
      ent += wTerm[t]! * entropy[t]!;
      let g = wPg[t]! * sur.slope;
      if (ref !== undefined) {
        const k = klTerm(logp[t]!, ref[t]!, s.klType, s.compat);
        kl += wTerm[t]! * k.value;
        g += s.klCoef * wTerm[t]! * k.slope;
      }
      dLogprob[i]![t] = scale * g;
      dEntropy[i]![t] = s.entropyCoeff === 0 ? 0 : -scale * s.entropyCoeff * wTerm[t]!;
    }
  }
  // ReCall's 0/0 cases: the affected terms are NaN, as its verl computes them.
  const nanPg = pgAgg.nan, nanTerm = termAgg.nan, nanMean = tokenMean.nan;
  const metrics: PolicyLossMetrics = {
    pg_loss: nanPg ? NaN : pg,
    pg_clipfrac: nanMean ? NaN : clipfrac,
    pg_clipfrac_lower: nanMean ? NaN : clipfracLower,
    ppo_kl: nanMean ? NaN : ppoKl,
    entropy: nanTerm ? NaN : ent,
    kl_loss: s.useKlLoss ? (nanTerm ? NaN : kl) : 0,
  };
  const total = metrics.pg_loss - s.entropyCoeff * metrics.entropy + (s.useKlLoss ? s.klCoef * metrics.kl_loss : 0);
  return { loss: scale * total, metrics, dLogprob, dEntropy };
}

/**
 * algorithm.use_kl_in_reward (verl's apply_kl_penalty): token-level rewards = the score on the last valid token
 * minus coef·kl on every masked token. `klPerToken` is klPenalty(old_log_prob, ref_log_prob, kl_penalty).
 * Also returns verl's `actor/reward_kl_penalty` metric: the batch mean of each sequence's masked mean KL
 * (sequences with an empty mask are left out, where verl would log NaN).
 */
export function klInReward(scores: readonly number[], klPerToken: readonly ArrayLike<number>[], masks: readonly ArrayLike<number>[], coef: number): { tokenRewards: Float32Array[]; klMean: number } {
  if (scores.length !== masks.length || klPerToken.length !== masks.length) {
    throw new RecallError(`kl in reward: ${scores.length} scores, ${klPerToken.length} KL rows and ${masks.length} masks; give one of each per sequence.`);
  }
  checkMasks(masks, "kl in reward");
  const f32 = Math.fround;
  let klSum = 0, rows = 0;
  const tokenRewards = masks.map((m, i) => {
    const kl = klPerToken[i]!;
    if (kl.length !== m.length) throw new RecallError(`kl in reward: sequence ${i} has ${kl.length} KL values but a mask of ${m.length}.`);
    const out = new Float32Array(m.length);
    let last = -1, rowKl = 0, count = 0;
    for (let t = 0; t < m.length; t++) {
      if (m[t] === 0) continue;
      last = t;
      count++;
      rowKl += kl[t]!;
      out[t] = f32(-f32(f32(coef) * f32(kl[t]!)));
    }
    if (last >= 0) out[last] = f32(f32(scores[i]!) + out[last]!);
    if (count > 0) { klSum += rowKl / count; rows++; }
    return out;
  });
  return { tokenRewards, klMean: rows > 0 ? klSum / rows : 0 };
}

/**
 * DAPO's overlong reward shaping (verl's reward manager with overlong_buffer): responses longer than
 * maxResponseLength − bufferLen lose up to penaltyFactor linearly, reaching −penaltyFactor at maxResponseLength.
 * Returns the penalty to add to the score (0 or negative).
 */
export function overlongPenalty(responseLength: number, maxResponseLength: number, bufferLen: number, penaltyFactor: number): number {
  if (!(bufferLen > 0) || bufferLen > maxResponseLength) {
    throw new RecallError(`overlong buffer: len must be in (0, max_response_length=${maxResponseLength}], got ${bufferLen}.`);
  }
  const expected = maxResponseLength - bufferLen;
  const exceed = responseLength - expected;
  return Math.min((-exceed / bufferLen) * penaltyFactor, 0);
}
