/**
 * CPU reference for ops/elementwise.ts: the same contracts, computed in float64 (outputs may be
 * Float64Array for finite-difference checks, or Float32Array to compare with the GPU).
 */
export type Out = Float32Array | Float64Array;

export function addRef(a: ArrayLike<number>, b: ArrayLike<number>, out: Out, n = out.length): void {
  for (let i = 0; i < n; i++) out[i] = a[i]! + b[i]!;
}

export function axpyRef(x: ArrayLike<number>, y: Out, alpha = 1, n = y.length): void {
  for (let i = 0; i < n; i++) y[i] = y[i]! + alpha * x[i]!;
}

export function scaleRef(x: Out, alpha: number, n = x.length): void {
  for (let i = 0; i < n; i++) x[i] = x[i]! * alpha;
}

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

/** h = silu(gate)·up over [rows, I], all contiguous. */
export function swigluRef(gate: ArrayLike<number>, up: ArrayLike<number>, h: Out, rows: number, I: number): void {
  for (let i = 0; i < rows * I; i++) {
    const g = gate[i]!;
    h[i] = g * sigmoid(g) * up[i]!;
  }
}

export function swigluBackwardRef(
  dh: ArrayLike<number>,
  gate: ArrayLike<number>,
  up: ArrayLike<number>,
  dgate: Out,
  dup: Out,
  rows: number,
  I: number,
): void {
  for (let i = 0; i < rows * I; i++) {
    const g = gate[i]!, s = sigmoid(g);
    dgate[i] = dh[i]! * up[i]! * s * (1 + g * (1 - s));
    dup[i] = dh[i]! * g * s;
  }
}
