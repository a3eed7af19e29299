/**
 * The SFT loss: the mean of −log p(token) over the trained tokens of an optimizer batch,
 *
 *   L = −(1/N) Σ_{sequences} Σ_{t: mask[t] = 1} log p(ids[t] | ids[<t]),   N = trained tokens of the whole batch,
 *
 * so ∂L/∂log p = −1/N on each trained token and 0 elsewhere. N counts the whole batch, not each micro-batch, so the
 * gradient does not depend on how the batch is cut into micro-batches (padding, packing and accumulation change
 * nothing but float rounding) — the fix transformers made to gradient accumulation.
 */

/** Per-sequence log-probs as the actor returns them: entry j is log p(ids[j + 1]). */
export type TokenLogprobs = Float32Array;

/** The mask entries that go with TokenLogprobs: mask[j + 1] for j = 0 … length − 2. */
export function predictedMask(mask: readonly number[]): Float32Array {
  return Float32Array.from(mask.slice(1));
}

export interface MaskedNll {
  /** Σ −log p over trained tokens (float64). */
  sum: number;
  /** Trained tokens. */
  tokens: number;
}

/** Σ −log p over the trained tokens of some sequences. */
export function maskedNll(logprob: readonly TokenLogprobs[], mask: readonly Float32Array[]): MaskedNll {
  let sum = 0, tokens = 0;
  logprob.forEach((lp, b) => {
    const m = mask[b]!;
    for (let j = 0; j < lp.length; j++) {
      if (m[j]! === 0) continue;
      sum -= lp[j]!;
      tokens++;
    }
  });
  return { sum, tokens };
}

/** ∂L/∂log p per token of each sequence, for a batch with `batchTokens` trained tokens in all. */
export function nllGradient(mask: readonly Float32Array[], batchTokens: number): Float32Array[] {
  const w = batchTokens > 0 ? -1 / batchTokens : 0;
  return mask.map((m) => m.map((x) => (x === 0 ? 0 : w)));
}
