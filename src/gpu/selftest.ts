/** A small end-to-end check of the GPU path: upload, one matmul kernel, readback, compare with the CPU. */
import type { Gpu } from "./runtime.ts";
import { matmul } from "../ops/matmul.ts";
import { matmulRef } from "../ops/matmul.ref.ts";

export interface SelfTestResult {
  ok: boolean;
  kernel: string;
  shape: { M: number; N: number; K: number };
  maxAbsError: number;
  tolerance: number;
  ms: number;
  error?: string;
}

export async function gpuSelfTest(gpu: Gpu): Promise<SelfTestResult> {
  const dims = { M: 37, N: 53, K: 29 };
  const tolerance = 1e-4;
  const t0 = performance.now();
  // Deterministic inputs with exactly representable products keep the comparison meaningful.
  const a = Float32Array.from({ length: dims.M * dims.K }, (_, i) => ((i * 7) % 13) / 8 - 0.75);
  const b = Float32Array.from({ length: dims.K * dims.N }, (_, i) => ((i * 5) % 11) / 4 - 1.25);
  const want = new Float32Array(dims.M * dims.N);
  matmulRef(a, b, want, dims, { transB: false });
  try {
    const ta = gpu.upload(a, [dims.M, dims.K]);
    const tb = gpu.upload(b, [dims.K, dims.N]);
    const tc = gpu.empty([dims.M, dims.N]);
    matmul(gpu, ta, tb, tc, dims);
    const got = await gpu.readF32(tc);
    gpu.release(ta, tb, tc);
    let maxAbsError = 0;
    for (let i = 0; i < want.length; i++) maxAbsError = Math.max(maxAbsError, Math.abs(got[i]! - want[i]!));
    if (Number.isNaN(got.reduce((s, v) => s + v, 0))) maxAbsError = Infinity;
    return { ok: maxAbsError <= tolerance, kernel: "matmul", shape: dims, maxAbsError, tolerance, ms: performance.now() - t0 };
  } catch (e) {
    return { ok: false, kernel: "matmul", shape: dims, maxAbsError: Infinity, tolerance, ms: performance.now() - t0, error: (e as Error).message };
  }
}
