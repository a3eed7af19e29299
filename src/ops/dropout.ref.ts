/**
 * CPU reference for ops/dropout.ts: the same keyed mask bit for bit (integer hashing), and the same f32 products.
 */
import { mix32 } from "../util/prng.ts";

/** The mask's key: two words that select one stream of keep/drop bits. */
export interface DropoutKey {
  key0: number;
  key1: number;
}

/** Keep element g iff the top 24 bits of its hash are at least this: round(p·2^24) (0 keeps everything). */
export function dropoutThreshold(p: number): number {
  if (!(p >= 0 && p < 1)) throw new Error(`dropout probability must be in [0, 1), got ${p}`);
  return Math.round(p * 2 ** 24);
}

/** What a kept value is multiplied by: 1/(1-p), as the f32 the kernel receives. */
export function dropoutScale(p: number): number {
  return Math.fround(1 / (1 - p));
}

/** Whether element g of the stream `k` is kept at `threshold`. */
export function keepsElement(k: DropoutKey, g: number, threshold: number): boolean {
  return mix32(mix32((g ^ k.key0) >>> 0) ^ k.key1) >>> 8 >= threshold;
}

/** y = mask ⊙ x · 1/(1-p) over n elements (stream positions first … first + n − 1), or y += that with `accumulate`. */
export function dropoutRef(x: ArrayLike<number>, y: Float32Array, p: number, k: DropoutKey, o: { n?: number; first?: number; accumulate?: boolean } = {}): void {
  const n = o.n ?? y.length, first = o.first ?? 0;
  const threshold = dropoutThreshold(p), scale = dropoutScale(p);
  for (let i = 0; i < n; i++) {
    const keep = keepsElement(k, first + i, threshold);
    if (o.accumulate) {
      if (keep) y[i] = Math.fround(y[i]! + Math.fround(x[i]! * scale));
    } else y[i] = keep ? Math.fround(x[i]! * scale) : 0;
  }
}
