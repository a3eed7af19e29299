/**
 * Matrix multiply on the GPU, in the variants a transformer's forward and backward need:
 *   forward   y = x·Wᵀ (+ b)          → matmul(x, W, {transB: true, bias})
 *   backward  dx = dy·W               → matmul(dy, W)
 *             dW += dyᵀ·x            → matmul(dy, x, {transA: true, accumulate: true})
 * Batched over a leading dimension with per-operand strides (0 broadcasts one operand).
 */
import { Params, type Gpu, type Kernel } from "../gpu/runtime.ts";
import { Tensor, shapeString } from "../gpu/tensor.ts";

const MATMUL: Kernel = { shader: "matmul", entry: "matmul", storage: ["read", "read", "read_write", "read"], uniforms: true };
/** Register/workgroup tiling of the kernel (WGSL overrides). The default was chosen with bench/matmul.ts on lavapipe. */
export interface MatmulTiling {
  tm: number; // rows per invocation (1..8); columns per invocation are fixed at 4 (one vec4)
  wgX: number;
  wgY: number;
}
/**
 * Tiling by the number of output rows, from bench/matmul.ts --sweep on lavapipe (2 cores): 8 rows × 4 columns per
 * invocation was fastest for training-sized products (~6–7 GFLOP/s vs ~4–5 for 4 rows, ~2 for 1 row); decode-sized
 * products (M = batch) use thin tiles so clamped duplicate rows don't multiply the work.
 */
export function chooseTiling(M: number): MatmulTiling {
  if (M >= 32) return { tm: 8, wgX: 16, wgY: 4 };
  if (M >= 4) return { tm: 4, wgX: 16, wgY: 4 };
  return { tm: M <= 1 ? 1 : 2, wgX: 64, wgY: 1 };
}

export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
  /** Added to every row of the result (length N). */
  bias?: Tensor;
  /** Override the kernel's tiling (benchmarks); results are identical, only speed differs. */
  tiling?: MatmulTiling;
  /** C += result instead of C = result. */
  accumulate?: boolean;
  alpha?: number;
  /** Number of independent products; A, B, C hold them back to back unless a stride says otherwise. */
  batch?: number;
  strideA?: number;
  strideB?: number;
  strideC?: number;
  /** Element offsets into each operand (for slices of a larger buffer). */
  offsetA?: number;
  offsetB?: number;
  offsetC?: number;
}

/** C = alpha · op(A)·op(B) (+ bias) (+ C). Shapes: op(A) is M×K, op(B) is K×N, C is M×N. */
export function matmul(gpu: Gpu, a: Tensor, b: Tensor, c: Tensor, dims: { M: number; N: number; K: number }, o: MatmulOptions = {}): void {
  const { M, N, K } = dims;
  const batch = o.batch ?? 1;
  const strideA = o.strideA ?? M * K;
  const strideB = o.strideB ?? K * N;
  const strideC = o.strideC ?? M * N;
  const need = (t: Tensor, off: number, stride: number, per: number, what: string) => {
    const last = off + (batch - 1) * stride + per;
    if (last > t.numel) throw new Error(`matmul: ${what} ${shapeString(t.shape)} too small for M=${M} N=${N} K=${K} batch=${batch}`);
  };
  need(a, o.offsetA ?? 0, strideA, M * K, "A");
  need(b, o.offsetB ?? 0, strideB, K * N, "B");
  need(c, o.offsetC ?? 0, strideC, M * N, "C");
  if (o.bias && o.bias.numel < N) throw new Error(`matmul: bias ${shapeString(o.bias.shape)} shorter than N=${N}`);
  const t = o.tiling ?? chooseTiling(M);
  gpu.dispatch({
    kernel: MATMUL,
    constants: { TRANS_A: !!o.transA, TRANS_B: !!o.transB, HAS_BIAS: !!o.bias, ACCUMULATE: !!o.accumulate, TM: t.tm, WG_X: t.wgX, WG_Y: t.wgY },
    params: new Params()
      .u32(M, N, K, batch, o.offsetA ?? 0, o.offsetB ?? 0, o.offsetC ?? 0, 0, strideA, strideB, strideC)
      .f32(o.alpha ?? 1)
      .bytes(),
    // With no bias the slot is bound to A (read-only, never read: HAS_BIAS is false).
    bindings: [a, b, c, o.bias ?? a],
    workgroups: [Math.ceil(N / (4 * t.wgX)), Math.ceil(M / (t.tm * t.wgY)), batch],
  });
}
