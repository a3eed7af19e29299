/**
 * CPU reference for ops/logprobs.ts: the same contract, computed in float64 the plain way (one full
 * logits row at a time; the reference has no memory limits to respect).
 */
import type { LogprobsDims, LastLogitsDims } from "./logprobs.ts";

type Arr = ArrayLike<number>;

function logitsRow(h: Arr, W: Arr, n: number, d: { V: number; D: number }, alpha: number): Float64Array {
  const z = new Float64Array(d.V);
  for (let v = 0; v < d.V; v++) {
    let s = 0;
    for (let e = 0; e < d.D; e++) s += h[n * d.D + e]! * W[v * d.D + e]!;
    z[v] = s * alpha;
  }
  return z;
}

function logSumExp(z: Float64Array): number {
  let m = -Infinity;
  for (const x of z) m = Math.max(m, x);
  let s = 0;
  for (const x of z) s += Math.exp(x - m);
  return m + Math.log(s);
}

export function logprobsRef(
  h: Arr,
  W: Arr,
  targets: Arr,
  d: LogprobsDims,
  opts: { temperature?: number } = {},
): { logprob: Float64Array; entropy: Float64Array; lse: Float64Array } {
  const alpha = 1 / (opts.temperature ?? 1);
  const logprob = new Float64Array(d.N), entropy = new Float64Array(d.N), lse = new Float64Array(d.N);
  for (let n = 0; n < d.N; n++) {
    const z = logitsRow(h, W, n, d, alpha);
    const L = logSumExp(z);
    let H = 0;
    for (const x of z) H -= Math.exp(x - L) * (x - L);
    const t = targets[n]!;
    lse[n] = L;
    entropy[n] = H;
    logprob[n] = t < d.V ? z[t]! - L : 0;
  }
  return { logprob, entropy, lse };
}

/** Gradients of Σ dlogprob·logprob + Σ dentropy·entropy with respect to h and W. */
export function logprobsBackwardRef(
  h: Arr,
  W: Arr,
  targets: Arr,
  dlogprob: Arr,
  dentropy: Arr,
  d: LogprobsDims,
  opts: { temperature?: number } = {},
): { dh: Float64Array; dW: Float64Array } {
  const alpha = 1 / (opts.temperature ?? 1);
  const dh = new Float64Array(d.N * d.D), dW = new Float64Array(d.V * d.D);
  for (let n = 0; n < d.N; n++) {
    const z = logitsRow(h, W, n, d, alpha);
    const L = logSumExp(z);
    let H = 0;
    for (const x of z) H -= Math.exp(x - L) * (x - L);
    const t = targets[n]!;
    const gl = t < d.V ? dlogprob[n]! : 0, gh = dentropy[n]!;
    for (let v = 0; v < d.V; v++) {
      const lp = z[v]! - L, p = Math.exp(lp);
      // d logprob / dz_v = [v = t] − p_v ;  d entropy / dz_v = −p_v (log p_v + H)
      const g = (gl * ((v === t ? 1 : 0) - p) - gh * p * (lp + H)) * alpha;
      if (g === 0) continue;
      for (let e = 0; e < d.D; e++) {
        dh[n * d.D + e] += g * W[v * d.D + e]!;
        dW[v * d.D + e] += g * h[n * d.D + e]!;
      }
    }
  }
  return { dh, dW };
}

/** out [B, V] = h[rows[b]] · Wᵀ (rows omitted: h is [B, D]). */
export function lastLogitsRef(h: Arr, W: Arr, d: LastLogitsDims, rows?: Arr): Float64Array {
  const out = new Float64Array(d.B * d.V);
  for (let b = 0; b < d.B; b++) out.set(logitsRow(h, W, rows ? rows[b]! : b, d, 1), b * d.V);
  return out;
}
