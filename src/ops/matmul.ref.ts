/** CPU reference for ops/matmul.ts: the same contract, computed in float64 and rounded once. */
import type { MatmulOptions } from "./matmul.ts";

export function matmulRef(
  a: Float32Array,
  b: Float32Array,
  c: Float32Array,
  dims: { M: number; N: number; K: number },
  o: Omit<MatmulOptions, "bias"> & { bias?: Float32Array } = {},
): void {
  const { M, N, K } = dims;
  const batch = o.batch ?? 1;
  const sA = o.strideA ?? M * K, sB = o.strideB ?? K * N * (o.glu ? 2 : 1), sC = o.strideC ?? M * N;
  const oA = o.offsetA ?? 0, oB = o.offsetB ?? 0, oC = o.offsetC ?? 0;
  for (let t = 0; t < batch; t++) {
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        const dot = (col: number, width: number) => {
          let s = 0;
          for (let k = 0; k < K; k++) {
            const av = a[oA + t * sA + (o.transA ? k * M + i : i * K + k)]!;
            const bv = b[oB + t * sB + (o.transB ? col * K + k : k * width + col)]!;
            s += av * bv;
          }
          return s * (o.alpha ?? 1);
        };
        let s: number;
        if (o.glu) {
          // B's rows are gate rows then up rows: silu(g)·u.
          const g = dot(j, 2 * N), u = dot(N + j, 2 * N);
          s = (g / (1 + Math.exp(-g))) * u;
        } else {
          s = dot(j, N);
        }
        if (o.bias) s += o.bias[j]!;
        const idx = oC + t * sC + i * N + j;
        c[idx] = o.accumulate ? c[idx]! + s : s;
      }
    }
  }
}
