import { describe, test, beforeAll } from "bun:test";
import { getGpu, type Gpu } from "../src/gpu/runtime.ts";
import { matmul, type MatmulOptions } from "../src/ops/matmul.ts";
import { matmulRef } from "../src/ops/matmul.ref.ts";
import { randn, expectClose, forReduction } from "./harness.ts";

let gpu: Gpu;
beforeAll(async () => {
  gpu = await getGpu();
});

// Sizes deliberately not multiples of the 32×32 tile or the 4×4 per-invocation block.
const SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [3, 5, 7],
  [33, 31, 17],
  [64, 64, 64],
  [37, 70, 129],
  [1, 130, 65],
];

async function check(M: number, N: number, K: number, o: MatmulOptions & { withBias?: boolean }, seed: number) {
  const batch = o.batch ?? 1;
  const sA = o.strideA ?? M * K, sB = o.strideB ?? K * N;
  const a = randn((batch - 1) * sA + M * K, seed);
  const b = randn((batch - 1) * sB + K * N, seed + 1);
  const c0 = randn(batch * M * N, seed + 2);
  const bias = o.withBias ? randn(N, seed + 3) : undefined;
  const ta = gpu.upload(a, [a.length]), tb = gpu.upload(b, [b.length]), tc = gpu.upload(c0, [c0.length]);
  const tbias = bias ? gpu.upload(bias, [N]) : undefined;
  matmul(gpu, ta, tb, tc, { M, N, K }, { ...o, bias: tbias });
  const got = await gpu.readF32(tc);
  const want = c0.slice();
  matmulRef(a, b, want, { M, N, K }, { ...o, bias });
  expectClose(got, want, forReduction("f32", K), `M=${M} N=${N} K=${K} ${JSON.stringify(o)}`);
  gpu.release(ta, tb, tc, ...(tbias ? [tbias] : []));
}

describe("matmul f32 vs CPU reference", () => {
  const variants: [string, MatmulOptions & { withBias?: boolean }][] = [
    ["A·B", {}],
    ["A·Bᵀ", { transB: true }],
    ["Aᵀ·B", { transA: true }],
    ["Aᵀ·Bᵀ", { transA: true, transB: true }],
    ["A·Bᵀ + bias", { transB: true, withBias: true }],
    ["accumulate Aᵀ·B", { transA: true, accumulate: true }],
    ["alpha", { alpha: 0.37 }],
  ];
  for (const [name, o] of variants) {
    test(name, async () => {
      let seed = 100;
      for (const [M, N, K] of SHAPES) await check(M, N, K, o, (seed += 10));
    });
  }
  test("batched, including a broadcast operand (stride 0)", async () => {
    await check(19, 23, 11, { batch: 3 }, 7);
    await check(9, 13, 21, { batch: 4, transB: true, strideB: 0 }, 8);
    await check(17, 5, 33, { batch: 2, transA: true, accumulate: true, withBias: true }, 9);
  });
  test("every tiling gives the same result", async () => {
    for (const tiling of [{ tm: 1, wgX: 64, wgY: 1 }, { tm: 2, wgX: 8, wgY: 8 }, { tm: 8, wgX: 16, wgY: 4 }, { tm: 3, wgX: 4, wgY: 16 }]) {
      await check(29, 45, 19, { transB: true, tiling }, 11);
      await check(3, 9, 40, { transA: true, tiling }, 12);
    }
  });
  test("offsets into larger buffers", async () => {
    const M = 5, N = 6, K = 7;
    const a = randn(100, 1), b = randn(100, 2), c = randn(100, 3);
    const o = { offsetA: 3, offsetB: 11, offsetC: 17 };
    const ta = gpu.upload(a, [100]), tb = gpu.upload(b, [100]), tc = gpu.upload(c, [100]);
    matmul(gpu, ta, tb, tc, { M, N, K }, o);
    const want = c.slice();
    matmulRef(a, b, want, { M, N, K }, o);
    expectClose(await gpu.readF32(tc), want, forReduction("f32", K), "offsets");
    gpu.release(ta, tb, tc);
  });
});
