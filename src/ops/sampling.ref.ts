/**
 * CPU reference for ops/sampling.ts, following the definitions in shaders/sampling.wgsl in float64
 * (sorting instead of the GPU's threshold search), plus the Philox4x32-10 generator.
 */
import { NONFINITE_ROW, type SamplingOptions } from "./sampling.ts";

function mulhi(a: number, b: number): number {
  const al = a & 0xffff, ah = a >>> 16, bl = b & 0xffff, bh = b >>> 16;
  const ll = al * bl, lh = al * bh, hl = ah * bl;
  const mid = (ll >>> 16) + (lh & 0xffff) + (hl & 0xffff);
  return (ah * bh + (lh >>> 16) + (hl >>> 16) + Math.floor(mid / 65536)) >>> 0;
}

/** Philox4x32 with 10 rounds (Random123's philox4x32_R(10, ctr, key)). */
export function philox4x32(ctr: readonly number[], key: readonly number[]): [number, number, number, number] {
  let [c0, c1, c2, c3] = ctr.map((x) => x >>> 0) as [number, number, number, number];
  let [k0, k1] = key.map((x) => x >>> 0) as [number, number];
  for (let r = 0; r < 10; r++) {
    if (r > 0) {
      k0 = (k0 + 0x9e3779b9) >>> 0;
      k1 = (k1 + 0xbb67ae85) >>> 0;
    }
    const hi0 = mulhi(0xd2511f53, c0), lo0 = Math.imul(0xd2511f53, c0) >>> 0;
    const hi1 = mulhi(0xcd9e8d57, c2), lo1 = Math.imul(0xcd9e8d57, c2) >>> 0;
    [c0, c1, c2, c3] = [(hi1 ^ c1 ^ k0) >>> 0, lo1, (hi0 ^ c3 ^ k1) >>> 0, lo0];
  }
  return [c0, c1, c2, c3];
}

/** The uniform in [0, 1) a row draws: top 24 bits of Philox((step, sequence, 0, 0), seed). */
export function samplingUniform(seed: number, seqId: number, step: number): number {
  const x = philox4x32([step, seqId, 0, 0], [seed % 2 ** 32, Math.floor(seed / 2 ** 32)])[0];
  return (x >>> 8) / 16777216;
}

export interface SampleRefResult {
  id: number;
  u: number;
  /** Kept ids (top-k ∩ top-p), ascending. */
  kept: number[];
  /** Probabilities of the kept ids after renormalisation (same order as kept). */
  probs: number[];
  /**
   * Smallest relative distance of a decision to its boundary: u·S to a CDF step, and for top-p the
   * mass above a kept/dropped value to p·S. A float32 GPU may decide differently only when it is tiny.
   */
  margin: number;
}

type Opts = Pick<SamplingOptions, "temperature" | "topK" | "topP" | "seed">;

export function sampleRowRef(row: ArrayLike<number>, V: number, o: Opts, seqId: number, step: number): SampleRefResult {
  const u = samplingUniform(o.seed, seqId, step);
  // NaN or +Inf: no distribution to sample from (−Inf is a masked id).
  for (let i = 0; i < V; i++) if (Number.isNaN(row[i]!) || row[i] === Infinity) return { id: NONFINITE_ROW, u, kept: [], probs: [], margin: Infinity };
  let best = 0;
  for (let i = 1; i < V; i++) if (row[i]! > row[best]!) best = i;
  if (o.temperature <= 0) return { id: best, u, kept: [best], probs: [1], margin: Infinity };
  const M = row[best]!;
  const w = (i: number) => Math.exp((row[i]! - M) / o.temperature);
  const desc = Array.from({ length: V }, (_, i) => i).sort((a, b) => row[b]! - row[a]! || a - b);
  let keep = new Set<number>(desc);
  const k = o.topK ?? 0;
  if (k > 0 && k < V) {
    const kth = row[desc[k - 1]!]!;
    keep = new Set(desc.filter((i) => row[i]! >= kth));
  }
  let margin = Infinity;
  const topP = o.topP ?? 1;
  if (topP < 1) {
    const cand = desc.filter((i) => keep.has(i));
    const S = cand.reduce((s, i) => s + w(i), 0);
    const target = topP * S;
    const next = new Set<number>();
    let above = 0; // weight of strictly larger logits
    for (let j = 0; j < cand.length; ) {
      let e = j;
      let group = 0;
      while (e < cand.length && row[cand[e]!] === row[cand[j]!]) group += w(cand[e++]!);
      margin = Math.min(margin, Math.abs(above - target) / S);
      if (above < target) for (let q = j; q < e; q++) next.add(cand[q]!);
      above += group;
      j = e;
    }
    keep = next;
  }
  const kept = [...keep].sort((a, b) => a - b);
  const weights = kept.map(w);
  const total = weights.reduce((a, b) => a + b, 0);
  const target = u * total;
  let run = 0;
  let id = kept[kept.length - 1]!;
  for (let j = 0; j < kept.length; j++) {
    if (weights[j]! <= 0) continue;
    const before = run;
    run += weights[j]!;
    margin = Math.min(margin, Math.abs(before - target) / total, Math.abs(run - target) / total);
    if (run > target) {
      id = kept[j]!;
      break;
    }
  }
  return { id, u, kept, probs: weights.map((x) => x / total), margin };
}

/** log softmax(row / T)[id] over the first V entries in float64 (T = 1 when greedy): the sampler's `logprob` output. */
export function sampledLogprobRef(row: ArrayLike<number>, V: number, id: number, temperature: number): number {
  const T = temperature > 0 ? temperature : 1;
  let M = -Infinity;
  for (let i = 0; i < V; i++) M = Math.max(M, row[i]!);
  let s = 0;
  for (let i = 0; i < V; i++) s += Math.exp((row[i]! - M) / T);
  return (row[id]! - M) / T - Math.log(s);
}
