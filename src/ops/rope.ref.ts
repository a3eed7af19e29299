/**
 * CPU reference for ops/rope.ts: HF rotate_half RoPE applied in place to x [rows, H·hd]. The angle
 * is the f32 product f32(position)·invFreq[i] (as transformers computes it); cos/sin in float64.
 */
import type { Out } from "./elementwise.ref.ts";

export function ropeRef(
  x: Out,
  positions: ArrayLike<number>,
  invFreq: ArrayLike<number>,
  rows: number,
  H: number,
  hd: number,
  inverse = false,
): void {
  const half = hd / 2;
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < half; i++) {
      const a = Math.fround(Math.fround(positions[r]!) * invFreq[i]!);
      const c = Math.cos(a), s = (inverse ? -1 : 1) * Math.sin(a);
      for (let h = 0; h < H; h++) {
        const o = r * H * hd + h * hd + i;
        const x1 = x[o]!, x2 = x[o + half]!;
        x[o] = x1 * c - x2 * s;
        x[o + half] = x2 * c + x1 * s;
      }
    }
  }
}
