/** CPU reference for ops/adamw.ts, in float64: global gradient norm, clip factor, AdamW step. */
import type { Out } from "./elementwise.ref.ts";
import type { AdamwOptions } from "./adamw.ts";

export function gradNormRef(grads: readonly ArrayLike<number>[]): number {
  let s = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) s += g[i]! * g[i]!;
  return Math.sqrt(s);
}

/** min(1, maxNorm / (norm + 1e-6)); 1 without clipping (maxNorm ≤ 0); −1 (skip the step) for a non-finite norm. */
export function clipFactorRef(norm: number, maxNorm: number): number {
  if (!Number.isFinite(norm)) return -1;
  if (maxNorm <= 0) return 1;
  return Math.min(1, maxNorm / (norm + 1e-6));
}

/** torch.optim.AdamW's update for one tensor, gradients scaled by clip (skipped when clip < 0). */
export function adamwRef(
  p: Out,
  g: Out,
  m: Out,
  v: Out,
  o: Pick<AdamwOptions, "lr" | "beta1" | "beta2" | "eps" | "weightDecay" | "step" | "zeroGrad">,
  clip = 1,
): void {
  const stepSize = o.lr / (1 - o.beta1 ** o.step);
  const bc2Sqrt = Math.sqrt(1 - o.beta2 ** o.step);
  for (let i = 0; i < p.length; i++) {
    if (clip >= 0) {
      const gi = g[i]! * clip;
      m[i] = m[i]! + (1 - o.beta1) * (gi - m[i]!);
      v[i] = v[i]! * o.beta2 + (1 - o.beta2) * gi * gi;
      p[i] = p[i]! * (1 - o.lr * o.weightDecay) - (stepSize * m[i]!) / (Math.sqrt(v[i]!) / bc2Sqrt + o.eps);
    }
    if (o.zeroGrad) g[i] = 0;
  }
}
