import { describe, test, expect, setDefaultTimeout } from "bun:test";
import { getGpu } from "../src/gpu/runtime.ts";
import { subgroupKernelsSupported } from "../src/gpu/shaders.ts";
import { matmul, choosePlan, normAFusable, vec4AAligned, vec4BAligned, type MatmulOptions, type MatmulPlan } from "../src/ops/matmul.ts";
import { Tensor } from "../src/gpu/tensor.ts";
import { matmulRef } from "../src/ops/matmul.ref.ts";
import { f32ToBf16 } from "../src/model/safetensors.ts";
import { randn, rng, expectClose, forReduction } from "./harness.ts";

// Every new kernel variant is a pipeline compile (up to ~1 s cold on lavapipe).
setDefaultTimeout(60_000);

const gpu = await getGpu();
const hasSubgroups = subgroupKernelsSupported(gpu);

// Sizes deliberately not multiples of any tile: the portable kernel's 4×4 blocks, the subgroup kernel's
// 8-k blocks, 16-row tiles and 64·tn-column tiles.
const SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [3, 5, 7],
  [33, 31, 17],
  [64, 64, 64],
  [37, 70, 129],
  [1, 130, 65],
];

type Case = MatmulOptions & { withBias?: boolean };

async function check(M: number, N: number, K: number, o: Case, seed: number) {
  const batch = o.batch ?? 1;
  const bElems = K * N * (o.glu ? 2 : 1); // GLU: gate rows then up rows
  const sA = o.strideA ?? M * K, sB = o.strideB ?? bElems, sC = o.strideC ?? M * N;
  const oA = o.offsetA ?? 0, oB = o.offsetB ?? 0, oC = o.offsetC ?? 0;
  // Operands sit inside larger buffers (offsets, strides, and a margin after) filled with data the product must not read.
  const a = randn(oA + (batch - 1) * sA + M * K + 5, seed);
  const b = randn(oB + (batch - 1) * sB + bElems + 7, seed + 1);
  const c0 = randn(oC + (batch - 1) * sC + M * N + 3, seed + 2);
  // NaN after the last product's operands: a kernel must not let a value it reads past the matrix (k past K, loads
  // clamped into the binding) reach the result, even multiplied by 0.
  a.fill(NaN, oA + (batch - 1) * sA + M * K);
  b.fill(NaN, oB + (batch - 1) * sB + bElems);
  const bias = o.withBias ? randn(N, seed + 3) : undefined;
  const ta = gpu.upload(a, [a.length]), tb = gpu.upload(b, [b.length]), tc = gpu.upload(c0, [c0.length]);
  const tbias = bias ? gpu.upload(bias, [N]) : undefined;
  matmul(gpu, ta, tb, tc, { M, N, K }, { ...o, bias: tbias });
  const got = await gpu.readF32(tc);
  const want = c0.slice();
  matmulRef(a, b, want, { M, N, K }, { ...o, bias });
  expectClose(got, want, forReduction("f32", K), `M=${M} N=${N} K=${K} ${JSON.stringify({ ...o, bias: undefined })}`);
  gpu.release(ta, tb, tc, ...(tbias ? [tbias] : []));
}

const VARIANTS: [string, Case][] = [
  ["A·B", {}],
  ["A·Bᵀ", { transB: true }],
  ["Aᵀ·B", { transA: true }],
  ["Aᵀ·Bᵀ", { transA: true, transB: true }],
  ["A·Bᵀ + bias", { transB: true, withBias: true }],
  ["accumulate Aᵀ·B", { transA: true, accumulate: true }],
  ["alpha", { alpha: 0.37 }],
];

describe("matmul f32 vs CPU reference (the plan matmul() chooses)", () => {
  for (const [name, o] of VARIANTS) {
    test(name, async () => {
      let seed = 100;
      for (const [M, N, K] of SHAPES) await check(M, N, K, o, (seed += 10));
    });
  }
  test("batched, including a broadcast operand (stride 0)", async () => {
    await check(19, 23, 11, { batch: 3 }, 7);
    await check(9, 13, 21, { batch: 4, transB: true, strideB: 0 }, 8);
    await check(17, 5, 33, { batch: 2, transA: true, accumulate: true, withBias: true }, 9);
    await check(6, 70, 24, { batch: 3, transB: true, strideA: 0 }, 10);
  });
  test("offsets into larger buffers", async () => {
    await check(5, 6, 7, { offsetA: 3, offsetB: 11, offsetC: 17 }, 1);
    await check(20, 66, 40, { transB: true, offsetA: 5, offsetB: 8, offsetC: 2 }, 2); // B aligned for vec4 loads, A and C not
    await check(20, 66, 40, { transB: true, offsetB: 6 }, 3); // B misaligned: scalar loads
  });
});

describe("portable kernel", () => {
  for (const [name, o] of VARIANTS) {
    test(name, async () => {
      let seed = 300;
      for (const [M, N, K] of SHAPES.slice(1, 5)) await check(M, N, K, { ...o, tiling: { tm: 4, wgX: 16, wgY: 4 } }, (seed += 10));
    });
  }
  test("every tiling gives the same result", async () => {
    for (const tiling of [{ tm: 1, wgX: 64, wgY: 1 }, { tm: 2, wgX: 8, wgY: 8 }, { tm: 8, wgX: 16, wgY: 4 }, { tm: 3, wgX: 4, wgY: 16 }]) {
      await check(29, 45, 19, { transB: true, tiling }, 11);
      await check(3, 9, 40, { transA: true, tiling }, 12);
    }
  });
  test("batched with offsets and strides", async () => {
    const plan: MatmulPlan = { kernel: "portable", tm: 8, wgX: 16, wgY: 4 };
    await check(9, 13, 21, { batch: 3, transB: true, strideB: 0, offsetA: 1, offsetC: 2, plan }, 13);
    await check(17, 5, 33, { batch: 2, transA: true, accumulate: true, withBias: true, strideA: 17 * 33 + 4, offsetB: 3, plan }, 14);
  });
});

describe.skipIf(!hasSubgroups)("subgroup kernel", () => {
  test("choosePlan: subgroup kernel, rows per tile track M, vec4 B only when aligned", () => {
    expect(choosePlan(gpu, { M: 128, N: 896, K: 896 }, { transB: true })).toEqual({ kernel: "subgroup", tm: 16, tn: 2, vec4B: true, vec4A: true });
    expect(choosePlan(gpu, { M: 3, N: 896, K: 896 }, { transB: true })).toEqual({ kernel: "subgroup", tm: 4, tn: 2, vec4B: true });
    expect(choosePlan(gpu, { M: 1, N: 896, K: 896 }, { transB: true, offsetB: 2, offsetA: 6 })).toEqual({ kernel: "subgroup", tm: 1, tn: 2, vec4B: false });
    expect(choosePlan(gpu, { M: 40, N: 896, K: 898 }, { transB: true })).toMatchObject({ vec4B: false });
    expect(choosePlan(gpu, { M: 40, N: 896, K: 896 }, {})).toMatchObject({ vec4B: false });
    expect(choosePlan(gpu, { M: 8, N: 8, K: 8 }, { transB: true, batch: 2, strideB: 66 })).toMatchObject({ vec4B: false });
    expect(choosePlan(gpu, { M: 8, N: 8, K: 8 }, { tiling: { tm: 2, wgX: 8, wgY: 8 } })).toEqual({ kernel: "portable", tm: 2, wgX: 8, wgY: 8 });
    // Narrow products split the workgroup into row groups (lavapipe's subgroups are 8 lanes).
    expect(choosePlan(gpu, { M: 3568, N: 64, K: 128 }, {})).toEqual({ kernel: "subgroup", tm: 16, tn: 2, vec4B: false, vec4A: true, wgn: 32 });
    expect(choosePlan(gpu, { M: 3568, N: 32, K: 64 }, { transB: true })).toEqual({ kernel: "subgroup", tm: 16, tn: 2, vec4B: true, vec4A: true, wgn: 16 });
    expect(choosePlan(gpu, { M: 64, N: 5, K: 64 }, { transA: true })).toMatchObject({ wgn: 8 });
    expect(choosePlan(gpu, { M: 64, N: 129, K: 64 }, {})).not.toHaveProperty("wgn");
  });

  test("choosePlan: vec4 A only when aligned (k for A, rows for Aᵀ), with 8+ rows per tile", () => {
    expect(choosePlan(gpu, { M: 1024, N: 384, K: 2048 }, { transA: true })).toMatchObject({ tm: 16, vec4A: true });
    expect(choosePlan(gpu, { M: 8, N: 384, K: 30 }, { transA: true })).toMatchObject({ tm: 8, vec4A: true });
    expect(choosePlan(gpu, { M: 5, N: 384, K: 32 }, {})).toMatchObject({ tm: 8, vec4A: true });
    expect(choosePlan(gpu, { M: 4, N: 384, K: 32 }, {})).not.toHaveProperty("vec4A"); // decode-sized: scalar A measured faster
    expect(choosePlan(gpu, { M: 1, N: 4864, K: 896 }, { transB: true })).not.toHaveProperty("vec4A");
    expect(choosePlan(gpu, { M: 2, N: 384, K: 32 }, { transA: true })).not.toHaveProperty("vec4A"); // M % 4 and tm % 4
    expect(choosePlan(gpu, { M: 1026, N: 384, K: 2048 }, { transA: true })).not.toHaveProperty("vec4A");
    expect(choosePlan(gpu, { M: 40, N: 64, K: 30 }, {})).not.toHaveProperty("vec4A");
    expect(choosePlan(gpu, { M: 40, N: 64, K: 32 }, { offsetA: 2 })).not.toHaveProperty("vec4A");
    expect(choosePlan(gpu, { M: 40, N: 64, K: 32 }, { batch: 2, strideA: 40 * 32 + 2 })).not.toHaveProperty("vec4A");
    expect(choosePlan(gpu, { M: 40, N: 64, K: 32 }, { batch: 2, strideA: 0, offsetA: 8 })).toMatchObject({ vec4A: true });
    expect(vec4AAligned({ M: 8, N: 8, K: 8 }, { transA: true }, 2)).toBe(false); // a 2-row tile can start mid-vec4
  });

  test("vec4 A: both transposes, scalar and vec4 B, tiles of every height, row groups, k tails, odd N", async () => {
    let seed = 2000;
    for (const transA of [false, true]) {
      // Transposed A needs tm % 4 == 0 (its vec4 run along rows); rows past M are still clamped in the last tile.
      for (const tm of transA ? [4, 12, 16] : [1, 5, 16]) {
        for (const [tn, wgn] of [[2, 64], tm === 16 ? [3, 16] : [1, 8]] as const) {
          const plan: MatmulPlan = { kernel: "subgroup", tm, tn, vec4B: false, vec4A: true, wgn };
          const M = transA ? 4 * (tm + 3) : 2 * tm + 3; // not a whole number of tiles
          for (const K of transA ? [5, 16, 27] : [4, 12, 40]) {
            await check(M, wgn * tn + 5, K, { transA, plan }, (seed += 10));
          }
          await check(M, 29, transA ? 13 : 20, { transA, transB: true, withBias: true, accumulate: true, alpha: -0.7, plan }, (seed += 10));
          if (tn !== 3) await check(M, 37, 36, { transA, transB: true, plan: { ...plan, vec4B: true } }, (seed += 10));
        }
      }
    }
  });

  test("vec4 A: batched with offsets and strides (multiples of 4), broadcast A", async () => {
    const plan: MatmulPlan = { kernel: "subgroup", tm: 16, tn: 2, vec4B: false, vec4A: true };
    await check(21, 70, 28, { batch: 3, offsetA: 8, strideA: 21 * 28 + 12, offsetB: 3, offsetC: 5, strideC: 21 * 70 + 1, plan }, 2101);
    await check(20, 70, 19, { batch: 2, transA: true, accumulate: true, offsetA: 4, strideA: 20 * 19 + 4, plan }, 2102);
    await check(24, 33, 44, { batch: 3, transB: true, strideA: 0, offsetA: 12, offsetB: 8, strideB: 33 * 44 + 4, plan: { ...plan, vec4B: true, tm: 8 } }, 2103);
    await check(28, 9, 17, { batch: 2, transA: true, transB: true, strideA: 0, offsetA: 4, plan: { ...plan, tm: 12, wgn: 8 } }, 2104);
  });

  test("row groups (wgn 8/16/32): rows past M in the last group, columns past N, both transposes, vec4 B", async () => {
    let seed = 900;
    for (const wgn of [8, 16, 32]) {
      for (const [tm, tn] of [[1, 1], [5, 2], [16, 2]] as const) {
        const plan: MatmulPlan = { kernel: "subgroup", tm, tn, vec4B: false, wgn };
        await check(tm * 3 + 2, wgn * tn + 3, 13, { transB: true, plan }, (seed += 10));
        await check(tm * 9 + 1, wgn * tn - 3, 21, { transA: true, accumulate: true, withBias: true, plan }, (seed += 10));
        await check(tm + 1, 7, 8, { transB: true, batch: 2, plan: { ...plan, vec4B: true } }, (seed += 10));
      }
    }
  });

  test("rows split across both register halves, every column count, k tails of every length", async () => {
    let seed = 500;
    for (const [tm, tn] of [[1, 1], [12, 3]] as const) {
      for (const K of [1, 7, 8, 13, 20]) {
        await check(tm + 5, 64 * tn + 3, K, { transB: true, plan: { kernel: "subgroup", tm, tn, vec4B: false } }, (seed += 10));
        await check(2 * tm + 1, 29, K, { transA: true, accumulate: true, withBias: true, plan: { kernel: "subgroup", tm, tn, vec4B: false } }, (seed += 10));
      }
    }
  });

  test("transposed copy of B (transposeB): the same bits as reading B in place; both A layouts, offsets, bias, accumulate", async () => {
    let seed = 3000;
    for (const [M, N, K, o] of [
      [37, 70, 36, {}],
      [33, 129, 4, { withBias: true }],
      [20, 31, 44, { transA: true, accumulate: true, offsetB: 3, offsetA: 8 }],
      [70, 5, 12, { alpha: -0.6, offsetC: 2 }],
    ] as [number, number, number, Case][]) {
      for (const [tm, vec4A] of [[16, !o.transA || M % 4 === 0], [5, false]] as const) {
        const plan: MatmulPlan = { kernel: "subgroup", tm, tn: 2, vec4B: true, transposeB: true, ...(vec4A && K % 4 === 0 && (o.offsetA ?? 0) % 4 === 0 ? { vec4A } : {}) };
        await check(M, N, K, { ...o, plan }, (seed += 10));
        // Bit for bit the plan that reads B in place.
        const a = gpu.upload(randn((o.offsetA ?? 0) + M * K, seed), [(o.offsetA ?? 0) + M * K]);
        const b = gpu.upload(randn((o.offsetB ?? 0) + K * N, seed + 1), [(o.offsetB ?? 0) + K * N]);
        const c0 = randn((o.offsetC ?? 0) + M * N, seed + 2);
        const bias = o.withBias ? gpu.upload(randn(N, seed + 3), [N]) : undefined;
        const outs = [];
        for (const p of [plan, { ...plan, transposeB: false, vec4B: false }]) {
          const c = gpu.upload(c0, [c0.length]);
          matmul(gpu, a, b, c, { M, N, K }, { ...o, bias, plan: p });
          outs.push(new Uint32Array((await gpu.readF32(c)).buffer));
          gpu.release(c);
        }
        expect([...outs[0]!]).toEqual([...outs[1]!]);
        gpu.release(a, b, ...(bias ? [bias] : []));
      }
    }
    const plan: MatmulPlan = { kernel: "subgroup", tm: 16, tn: 2, vec4B: true, transposeB: true };
    const t = gpu.empty([64]);
    expect(() => matmul(gpu, t, t, t, { M: 4, N: 4, K: 3 }, { plan })).toThrow(/transposeB needs/);
    expect(() => matmul(gpu, t, t, t, { M: 4, N: 4, K: 4 }, { transB: true, plan })).toThrow(/transposeB needs/);
    gpu.release(t);
  });

  test("choosePlan: a software adapter copies a non-transposed B transposed for training-sized products only", () => {
    const sw = gpu.handle.info.software;
    expect(choosePlan(gpu, { M: 2048, N: 384, K: 1024 }, {})).toMatchObject({ transposeB: sw ? true : undefined, vec4B: sw });
    expect(choosePlan(gpu, { M: 1024, N: 384, K: 2048 }, { transA: true })).toMatchObject({ transposeB: sw ? true : undefined });
    for (const [d, o] of [
      [{ M: 2048, N: 384, K: 1024 }, { transB: true }], // B already transposed
      [{ M: 256, N: 384, K: 2048 }, { transA: true }], // too few rows for the copy to pay
      [{ M: 2048, N: 64, K: 128 }, {}], // narrow
      [{ M: 2048, N: 384, K: 1026 }, {}], // K not a multiple of 4
      [{ M: 2048, N: 384, K: 1024 }, { batch: 2 }],
    ] as [{ M: number; N: number; K: number }, MatmulOptions][]) {
      expect(choosePlan(gpu, d, o)).not.toHaveProperty("transposeB");
    }
  });

  test("vec4 B: K % 8 == 0 and == 4, batched, offsets", async () => {
    for (const [tm, tn] of [[1, 2], [5, 1], [16, 2]] as const) {
      const plan: MatmulPlan = { kernel: "subgroup", tm, tn, vec4B: true };
      await check(tm + 3, 70, 36, { transB: true, plan }, 600 + tm);
      await check(tm + 1, 17, 12, { transB: true, batch: 3, strideB: 17 * 12 + 8, strideA: 0, offsetB: 4, plan }, 620 + tm);
    }
    const plan: MatmulPlan = { kernel: "subgroup", tm: 9, tn: 4, vec4B: true };
    await check(9, 300, 64, { transB: true, withBias: true, accumulate: true, alpha: -0.5, offsetA: 1, offsetB: 12, offsetC: 3, plan }, 630);
  });

  test.skipIf(!gpu.device.features.has("shader-f16"))("vec4 A with an f16 B (scalar and vec4), both transposes, GLU", async () => {
    let seed = 2200;
    const cases: [number, number, number, Case][] = [
      [13, 70, 20, { plan: { kernel: "subgroup", tm: 16, tn: 2, vec4B: false, vec4A: true } }],
      [12, 70, 21, { transA: true, accumulate: true, plan: { kernel: "subgroup", tm: 8, tn: 2, vec4B: false, vec4A: true } }],
      [13, 70, 36, { transB: true, withBias: true, offsetB: 4, plan: { kernel: "subgroup", tm: 5, tn: 2, vec4B: true, vec4A: true } }],
      [16, 37, 28, { transA: true, transB: true, plan: { kernel: "subgroup", tm: 12, tn: 2, vec4B: true, vec4A: true, wgn: 8 } }],
      [9, 19, 12, { transB: true, glu: true, offsetA: 4, plan: { kernel: "subgroup", tm: 16, tn: 2, vec4B: true, vec4A: true } }],
      // A transposed copy of an f16 B is f32 (the values convert exactly).
      [21, 70, 36, { offsetB: 3, plan: { kernel: "subgroup", tm: 16, tn: 2, vec4B: true, vec4A: true, transposeB: true } }],
      [16, 37, 28, { transA: true, accumulate: true, plan: { kernel: "subgroup", tm: 8, tn: 2, vec4B: true, transposeB: true } }],
    ];
    for (const [M, N, K, o] of cases) {
      const oA = o.offsetA ?? 0, oB = o.offsetB ?? 0, bElems = K * N * (o.glu ? 2 : 1);
      const a = randn(oA + M * K, (seed += 10)), half = new Float16Array(randn(oB + bElems, seed + 1)), c0 = randn(M * N, seed + 2);
      const bias = o.withBias ? randn(N, seed + 3) : undefined;
      const ta = gpu.upload(a, [a.length]), tb = gpu.upload(new Uint16Array(half.buffer), [half.length], "f16"), tc = gpu.upload(c0, [M * N]);
      const tbias = bias ? gpu.upload(bias, [N]) : undefined;
      matmul(gpu, ta, tb, tc, { M, N, K }, { ...o, bias: tbias });
      const want = c0.slice();
      matmulRef(a, Float32Array.from(half), want, { M, N, K }, { ...o, bias });
      expectClose(await gpu.readF32(tc), want, forReduction("f32", K), `f16 B M=${M} N=${N} K=${K} ${JSON.stringify({ ...o, bias: undefined })}`);
      gpu.release(ta, tb, tc, ...(tbias ? [tbias] : []));
    }
  });

  test("randomized against the reference: shapes, flags, batches, strides, offsets, plans", async () => {
    const r = rng(2024);
    const int = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
    for (let i = 0; i < 20; i++) {
      const M = pick([1, 2, 4, int(1, 40), 4 * int(1, 10)]), N = pick([int(1, 20), int(60, 200)]), K = pick([int(1, 12), int(13, 140), 4 * int(1, 30)]);
      const batch = pick([1, 1, 2, 3]);
      const o: Case = {
        transA: r() < 0.5,
        transB: r() < 0.5,
        withBias: r() < 0.3,
        accumulate: r() < 0.3,
        alpha: r() < 0.3 ? 1.5 : undefined,
        batch,
        offsetA: pick([0, 0, 4 * int(1, 3), int(1, 9)]),
        offsetB: pick([0, 4 * int(1, 4), int(1, 9)]),
        offsetC: pick([0, int(1, 9)]),
      };
      if (batch > 1) {
        o.strideA = pick([M * K, M * K + int(1, 8), M * K + 4 * int(1, 2), 0]);
        o.strideB = pick([K * N, K * N + 4 * int(1, 3), 0]);
        o.strideC = M * N + pick([0, int(1, 5)]);
      }
      // Half the cases take matmul()'s own plan; the rest a random subgroup tiling (vec4 A and B when the shape allows it).
      if (r() < 0.5) {
        const tm = pick([1, 2, 4, 5, 11, 12, 16]);
        const vec4A = vec4AAligned({ M, N, K }, o, tm) && r() < 0.8;
        o.plan = { kernel: "subgroup", tm, tn: pick([1, 2]), vec4B: vec4BAligned({ M, N, K }, o) && r() < 0.8, ...(vec4A ? { vec4A } : {}), wgn: pick([8, 16, 32, 64]) };
      }
      await check(M, N, K, o, 700 + 10 * i);
    }
  });

  test("plans the kernel cannot run are refused", () => {
    const t = gpu.upload(new Float32Array(64), [64]);
    const o = gpu.empty([64]);
    expect(() => matmul(gpu, t, t, o, { M: 2, N: 2, K: 6 }, { transB: true, plan: { kernel: "subgroup", tm: 2, tn: 2, vec4B: true } })).toThrow(/vec4B needs/);
    expect(() => matmul(gpu, t, t, o, { M: 2, N: 2, K: 8 }, { plan: { kernel: "subgroup", tm: 2, tn: 2, vec4B: true } })).toThrow(/vec4B needs/);
    expect(() => matmul(gpu, t, t, o, { M: 2, N: 2, K: 8 }, { plan: { kernel: "subgroup", tm: 17, tn: 2, vec4B: false } })).toThrow(/outside/);
    expect(() => matmul(gpu, t, t, o, { M: 2, N: 2, K: 6 }, { plan: { kernel: "subgroup", tm: 2, tn: 2, vec4B: false, vec4A: true } })).toThrow(/vec4A needs/);
    expect(() => matmul(gpu, t, t, o, { M: 2, N: 2, K: 8 }, { offsetA: 2, plan: { kernel: "subgroup", tm: 2, tn: 2, vec4B: false, vec4A: true } })).toThrow(/vec4A needs/);
    expect(() => matmul(gpu, t, t, o, { M: 4, N: 2, K: 8 }, { transA: true, plan: { kernel: "subgroup", tm: 2, tn: 2, vec4B: false, vec4A: true } })).toThrow(/vec4A needs/);
    expect(() => matmul(gpu, t, t, o, { M: 2, N: 2, K: 8 }, { plan: { kernel: "subgroup", tm: 2, tn: 2, vec4B: false, wgn: 24 } })).toThrow(/row groups of 24/);
    gpu.release(t, o);
  });
});

describe("GLU epilogue: C = silu(A·Gᵀ) ⊙ A·Uᵀ from a fused [2N, K] gate/up weight", () => {
  const SIZES: [number, number, number][] = [
    [1, 1, 1],
    [3, 5, 7],
    [16, 37, 24],
    [13, 130, 33],
    [40, 70, 64],
  ];
  test("the plan matmul() chooses, with alpha, offsets and batches", async () => {
    let seed = 1000;
    for (const [M, N, K] of SIZES) await check(M, N, K, { transB: true, glu: true }, (seed += 10));
    await check(7, 19, 12, { transB: true, glu: true, alpha: 0.7, offsetA: 3, offsetB: 8, offsetC: 5 }, 1101);
    await check(5, 9, 16, { transB: true, glu: true, batch: 3, strideA: 0 }, 1102);
  });
  test("portable kernel, every tiling", async () => {
    let seed = 1200;
    for (const tiling of [{ tm: 1, wgX: 64, wgY: 1 }, { tm: 4, wgX: 16, wgY: 4 }, { tm: 8, wgX: 16, wgY: 4 }, { tm: 3, wgX: 4, wgY: 16 }]) {
      for (const [M, N, K] of SIZES) await check(M, N, K, { transB: true, glu: true, tiling }, (seed += 10));
    }
  });
  test.skipIf(!hasSubgroups)("subgroup kernel: row groups, both register halves, vec4 and scalar B, k tails", async () => {
    let seed = 1400;
    for (const wgn of [8, 16, 32, 64]) {
      for (const tm of [1, 5, 16]) {
        for (const vec4B of [false, true]) {
          // vec4 A rides along with vec4 B here (K a multiple of 4); scalar A with scalar B.
          const plan: MatmulPlan = { kernel: "subgroup", tm, tn: 2, vec4B, ...(vec4B ? { vec4A: true } : {}), wgn };
          await check(tm * 2 + 3, wgn + 5, vec4B ? 36 : 13, { transB: true, glu: true, plan }, (seed += 10));
          await check(tm, Math.max(1, wgn - 3), vec4B ? 12 : 21, { transB: true, glu: true, plan }, (seed += 10));
        }
      }
    }
    // A GLU row group covers wgn output columns (not wgn·tn): 24 columns keep at least 32 lanes.
    const p = choosePlan(gpu, { M: 16, N: 24, K: 64 }, { transB: true, glu: true });
    expect(p.kernel === "subgroup" && p.tn === 2 && (p.wgn ?? 64) >= 24).toBe(true);
  });
  test.skipIf(!gpu.device.features.has("shader-f16"))("f16 B (frozen weights kept in half precision)", async () => {
    let seed = 1600;
    for (const [M, N, K] of SIZES.slice(1)) {
      for (const o of [{}, { tiling: { tm: 4, wgX: 16, wgY: 4 } }, { offsetB: 6 }] as MatmulOptions[]) {
        const oB = o.offsetB ?? 0;
        const a = randn(M * K, (seed += 10)), half = new Float16Array(randn(oB + 2 * N * K, seed + 1));
        const ta = gpu.upload(a, [M * K]), tb = gpu.upload(new Uint16Array(half.buffer), [half.length], "f16"), tc = gpu.empty([M * N]);
        matmul(gpu, ta, tb, tc, { M, N, K }, { ...o, transB: true, glu: true });
        const want = new Float32Array(M * N);
        matmulRef(a, Float32Array.from(half), want, { M, N, K }, { transB: true, glu: true, offsetB: oB });
        expectClose(await gpu.readF32(tc), want, forReduction("f32", K), `f16 B M=${M} N=${N} K=${K} ${JSON.stringify(o)}`);
        gpu.release(ta, tb, tc);
      }
    }
  });
  test("bad uses are refused", () => {
    const t = gpu.upload(new Float32Array(64), [64]);
    const o = gpu.empty([64]);
    expect(() => matmul(gpu, t, t, o, { M: 2, N: 2, K: 4 }, { glu: true })).toThrow(/GLU epilogue needs transB/);
    expect(() => matmul(gpu, t, t, o, { M: 2, N: 2, K: 4 }, { transB: true, glu: true, accumulate: true })).toThrow(/GLU/);
    expect(() => matmul(gpu, t, t, o, { M: 2, N: 2, K: 4 }, { transB: true, glu: true, bias: t })).toThrow(/GLU/);
    if (hasSubgroups) expect(() => matmul(gpu, t, t, o, { M: 2, N: 2, K: 4 }, { transB: true, glu: true, plan: { kernel: "subgroup", tm: 2, tn: 1, vec4B: false } })).toThrow(/tn = 2/);
    gpu.release(t, o);
  });
});

describe("bf16 B (a rollout's copy of the weights; any adapter)", () => {
  /** Values of x rounded to bf16: the packed halves, and the same values as f32. */
  function toBf16(x: Float32Array): { packed: Uint16Array; values: Float32Array } {
    const packed = f32ToBf16(x);
    const words = new Uint32Array(packed.length);
    for (let i = 0; i < packed.length; i++) words[i] = packed[i]! << 16;
    return { packed, values: new Float32Array(words.buffer) };
  }

  /** matmul with B as bf16 and with B as f32 holding the same values: equal bit for bit, and close to the reference. */
  async function checkBf16(M: number, N: number, K: number, o: Case, seed: number) {
    const batch = o.batch ?? 1;
    const bElems = K * N * (o.glu ? 2 : 1);
    const sA = o.strideA ?? M * K, sB = o.strideB ?? bElems, sC = o.strideC ?? M * N;
    const oA = o.offsetA ?? 0, oB = o.offsetB ?? 0, oC = o.offsetC ?? 0;
    const a = randn(oA + (batch - 1) * sA + M * K + 5, seed);
    const raw = randn(oB + (batch - 1) * sB + bElems + 7, seed + 1);
    raw.fill(NaN, oB + (batch - 1) * sB + bElems);
    const b = toBf16(raw);
    const c0 = randn(oC + (batch - 1) * sC + M * N + 3, seed + 2);
    const bias = o.withBias ? randn(N, seed + 3) : undefined;
    const ta = gpu.upload(a, [a.length]), tb16 = gpu.upload(b.packed, [b.packed.length], "bf16"), tb32 = gpu.upload(b.values, [b.values.length]);
    const tc16 = gpu.upload(c0, [c0.length]), tc32 = gpu.upload(c0, [c0.length]);
    const tbias = bias ? gpu.upload(bias, [N]) : undefined;
    const label = `bf16 B M=${M} N=${N} K=${K} ${JSON.stringify({ ...o, bias: undefined })}`;
    matmul(gpu, ta, tb16, tc16, { M, N, K }, { ...o, bias: tbias });
    // The f32 run takes the plan the bf16 run took (a bf16 B reads as vec4 only at 8-aligned k).
    matmul(gpu, ta, tb32, tc32, { M, N, K }, { ...o, bias: tbias, plan: o.plan ?? (o.tiling ? undefined : choosePlan(gpu, { M, N, K }, o, "bf16")) });
    const got = await gpu.readF32(tc16);
    expect(got, label).toEqual(await gpu.readF32(tc32));
    const want = c0.slice();
    matmulRef(a, b.values, want, { M, N, K }, { ...o, bias });
    expectClose(got, want, forReduction("f32", K), label);
    gpu.release(ta, tb16, tb32, tc16, tc32, ...(tbias ? [tbias] : []));
  }

  test("the plan matmul() chooses and the portable kernel: every flag, odd sizes, offsets, batches, GLU", async () => {
    let seed = 3000;
    for (const [M, N, K] of SHAPES) {
      for (const [, v] of VARIANTS) await checkBf16(M, N, K, v, (seed += 10));
      await checkBf16(M, N, K, { transB: true, tiling: { tm: 4, wgX: 16, wgY: 4 } }, (seed += 10));
    }
    await checkBf16(7, 19, 16, { transB: true, glu: true, offsetA: 3, offsetB: 8, offsetC: 5 }, 3501);
    await checkBf16(7, 19, 13, { transB: true, glu: true, offsetB: 3, tiling: { tm: 1, wgX: 64, wgY: 1 } }, 3502);
    await checkBf16(5, 9, 16, { transB: true, batch: 3, strideA: 0, strideB: 9 * 16 + 8, offsetB: 16 }, 3503);
    await checkBf16(5, 9, 11, { batch: 2, strideB: 9 * 11 + 3, offsetB: 1 }, 3504);
  });

  test.skipIf(!hasSubgroups)("subgroup kernel: vec4 (8 k a load) and scalar B, vec4 A, row groups, GLU, the transposed copy", async () => {
    let seed = 3600;
    const cases: [number, number, number, Case][] = [
      [16, 130, 64, { transB: true, plan: { kernel: "subgroup", tm: 16, tn: 2, vec4B: true, vec4A: true } }],
      [13, 70, 40, { transB: true, withBias: true, accumulate: true, alpha: -0.5, offsetB: 8, offsetA: 4, plan: { kernel: "subgroup", tm: 5, tn: 2, vec4B: true, vec4A: true } }],
      [3, 37, 24, { transB: true, plan: { kernel: "subgroup", tm: 4, tn: 4, vec4B: true, wgn: 8 } }],
      [9, 19, 16, { transB: true, glu: true, plan: { kernel: "subgroup", tm: 16, tn: 2, vec4B: true, vec4A: true } }],
      [2, 70, 20, { transB: true, offsetB: 4, plan: { kernel: "subgroup", tm: 2, tn: 2, vec4B: false } }],
      [12, 33, 21, { transA: true, accumulate: true, plan: { kernel: "subgroup", tm: 8, tn: 2, vec4B: false, vec4A: true } }],
      [6, 17, 16, { transB: true, batch: 3, strideB: 17 * 16 + 8, strideA: 0, offsetB: 8, plan: { kernel: "subgroup", tm: 8, tn: 2, vec4B: true } }],
      [21, 70, 36, { offsetB: 3, plan: { kernel: "subgroup", tm: 16, tn: 2, vec4B: true, vec4A: true, transposeB: true } }],
    ];
    for (const [M, N, K, o] of cases) await checkBf16(M, N, K, o, (seed += 10));
    // Decode-sized projections at 8-aligned K read B 8 k a load.
    const p = choosePlan(gpu, { M: 16, N: 1152, K: 384 }, { transB: true }, "bf16");
    expect(p.kernel === "subgroup" && p.vec4B).toBe(true);
    expect(vec4BAligned({ M: 4, N: 8, K: 12 }, { transB: true }, "bf16")).toBe(false);
    expect(vec4BAligned({ M: 4, N: 8, K: 16 }, { transB: true, offsetB: 4 }, "bf16")).toBe(false);
    const t = gpu.upload(new Float32Array(64), [64]), h = gpu.upload(new Uint16Array(64), [64], "bf16"), out = gpu.empty([64]);
    expect(() => matmul(gpu, t, h, out, { M: 2, N: 2, K: 12 }, { transB: true, plan: { kernel: "subgroup", tm: 2, tn: 2, vec4B: true } })).toThrow(/multiples of 8/);
    gpu.release(t, h, out);
  });

  test("randomized against the f32 kernel and the reference", async () => {
    const r = rng(4040);
    const int = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
    for (let i = 0; i < 14; i++) {
      const M = pick([1, 2, int(1, 40)]), N = pick([int(1, 20), int(60, 200)]), K = pick([int(1, 40), 8 * int(1, 16)]);
      const o: Case = { transB: r() < 0.8, withBias: r() < 0.3, accumulate: r() < 0.3, offsetB: pick([0, 8 * int(1, 3), int(1, 9)]), offsetA: pick([0, 4]) };
      if (r() < 0.4 && hasSubgroups) {
        const tm = pick([1, 2, 5, 16]);
        o.plan = { kernel: "subgroup", tm, tn: pick([1, 2]), vec4B: vec4BAligned({ M, N, K }, o, "bf16") && r() < 0.8, wgn: pick([8, 16, 64]) };
      } else if (r() < 0.3) {
        o.tiling = pick([{ tm: 1, wgX: 64, wgY: 1 }, { tm: 8, wgX: 16, wgY: 4 }]);
      }
      await checkBf16(M, N, K, o, 4100 + 10 * i);
    }
  });
});

describe.skipIf(!hasSubgroups)("normA: the RMSNorm of A in the product's prologue", () => {
  test("equals rmsnorm() then matmul() bit for bit: row counts, odd N, bias, accumulate, GLU, bf16 and f16 B, offsets", async () => {
    const { rmsnorm } = await import("../src/ops/rmsnorm.ts");
    let seed = 5000;
    const f16 = gpu.device.features.has("shader-f16");
    const cases: [number, number, number, Case & { bf16?: boolean; f16?: boolean }][] = [
      [1, 70, 64, { transB: true }],
      [3, 37, 36, { transB: true, withBias: true }],
      [8, 130, 64, { transB: true, accumulate: true }],
      [13, 19, 40, { transB: true, glu: true }],
      [16, 64, 128, { transB: true, offsetA: 8, offsetB: 4, offsetC: 3 }],
      [21, 33, 20, { transB: true, withBias: true, alpha: 0.5 }],
      [16, 41, 64, { transB: true, bf16: true, glu: true }],
      [5, 70, 24, { transB: true, bf16: true, withBias: true, accumulate: true }],
      ...(f16 ? [[9, 40, 32, { transB: true, f16: true, glu: true }] as [number, number, number, Case & { f16: boolean }]] : []),
    ];
    for (const [M, N, K, o] of cases) {
      seed += 10;
      const oA = o.offsetA ?? 0, oB = o.offsetB ?? 0, bElems = K * N * (o.glu ? 2 : 1);
      const x = randn(oA + M * K, seed, 2);
      // The norm weight sits at element 67 of a larger buffer (not a binding-aligned offset).
      const wAll = randn(67 + K + 3, seed + 1);
      let bVals = randn(oB + bElems, seed + 2);
      let tb;
      if (o.bf16) {
        const bits = f32ToBf16(bVals);
        const words = new Uint32Array(bits.length);
        for (let i = 0; i < bits.length; i++) words[i] = bits[i]! << 16;
        bVals = new Float32Array(words.buffer);
        tb = gpu.upload(bits, [bits.length], "bf16");
      } else if (o.f16) {
        const half = new Float16Array(bVals);
        bVals = Float32Array.from(half);
        tb = gpu.upload(new Uint16Array(half.buffer), [half.length], "f16");
      } else {
        tb = gpu.upload(bVals, [bVals.length]);
      }
      const c0 = randn((o.offsetC ?? 0) + M * N, seed + 3);
      const bias = o.withBias ? gpu.upload(randn(N, seed + 4), [N]) : undefined;
      const tx = gpu.upload(x, [x.length]), tw = gpu.upload(wAll, [wAll.length]);
      const w = new Tensor(tw.buffer, [K], "f32", 67 * 4);
      const fused = gpu.upload(c0, [c0.length]), apart = gpu.upload(c0, [c0.length]);
      const opts: MatmulOptions = { transB: true, glu: o.glu, accumulate: o.accumulate, alpha: o.alpha, offsetA: oA, offsetB: oB, offsetC: o.offsetC, bias };
      expect(normAFusable(gpu, { M, N, K }, opts, o.bf16 ? "bf16" : o.f16 ? "f16" : "f32")).toBe(true);
      matmul(gpu, tx, tb, fused, { M, N, K }, { ...opts, normA: { weight: w, eps: 1e-6 } });
      const h = gpu.zeros([oA + M * K]);
      rmsnorm(gpu, new Tensor(tx.buffer, [M * K], "f32", oA * 4), w, new Tensor(h.buffer, [M * K], "f32", oA * 4), null, { rows: M, D: K }, { eps: 1e-6 });
      matmul(gpu, h, tb, apart, { M, N, K }, opts);
      const label = `normA M=${M} N=${N} K=${K} ${JSON.stringify({ ...o, bias: undefined })}`;
      expect(await gpu.readF32(fused), label).toEqual(await gpu.readF32(apart));
      gpu.release(tx, tw, tb, fused, apart, h, ...(bias ? [bias] : []));
    }
    // What it cannot fuse is refused.
    const t = gpu.upload(new Float32Array(256), [256]), out = gpu.empty([64]);
    expect(normAFusable(gpu, { M: 2, N: 2, K: 6 }, { transB: true })).toBe(false);
    expect(normAFusable(gpu, { M: 2, N: 2, K: 8 }, { transB: true, transA: true })).toBe(false);
    expect(normAFusable(gpu, { M: 2, N: 2, K: 8 }, {})).toBe(false);
    expect(() => matmul(gpu, t, t, out, { M: 2, N: 2, K: 8 }, { normA: { weight: t, eps: 1e-6 } })).toThrow(/normA needs/);
    gpu.release(t, out);
  });
});
