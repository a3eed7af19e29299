/** CPU reference for ops/rmsnorm.ts: the same contract over [rows, D], computed in float64. */
import type { Out } from "./elementwise.ref.ts";

export function rmsnormRef(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  y: Out,
  rinv: Out | null,
  rows: number,
  D: number,
  eps: number,
): void {
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let j = 0; j < D; j++) ss += x[r * D + j]! ** 2;
    const inv = 1 / Math.sqrt(ss / D + eps);
    if (rinv) rinv[r] = inv;
    for (let j = 0; j < D; j++) y[r * D + j] = x[r * D + j]! * inv * w[j]!;
  }
}

/** dx written (or added with accumulateDx); dw accumulated. */
export function rmsnormBackwardRef(
  dy: ArrayLike<number>,
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  rinv: ArrayLike<number>,
  dx: Out | null,
  dw: Out | null,
  rows: number,
  D: number,
  accumulateDx = false,
): void {
  for (let r = 0; r < rows; r++) {
    const inv = rinv[r]!;
    let s = 0;
    for (let j = 0; j < D; j++) s += dy[r * D + j]! * w[j]! * x[r * D + j]!;
    const c = (inv * inv * inv * s) / D;
    for (let j = 0; j < D; j++) {
      const i = r * D + j;
      if (dx) {
        const v = inv * w[j]! * dy[i]! - x[i]! * c;
        dx[i] = accumulateDx ? dx[i]! + v : v;
      }
      if (dw) dw[j] = dw[j]! + dy[i]! * x[i]! * inv;
    }
  }
}
