import { describe, test, beforeAll, expect, setDefaultTimeout } from "bun:test";
import { getGpu, type Gpu } from "../src/gpu/runtime.ts";
import type { Tensor } from "../src/gpu/tensor.ts";
import { adamw, gradNormClip, gradNormScratchSize, type AdamwOptions } from "../src/ops/adamw.ts";
import { adamwRef, gradNormRef, clipFactorRef } from "../src/ops/adamw.ref.ts";
import { randn, expectClose, forReduction } from "./harness.ts";

// Cold lavapipe pipeline compiles on a busy machine can take seconds; the 5 s default is too tight.
setDefaultTimeout(60_000);

let gpu: Gpu;
beforeAll(async () => {
  gpu = await getGpu();
});

const SIZES = [1, 37, 1031, 70001];
const HP = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 };

async function normOnGpu(grads: Float32Array[], maxNorm: number, o: { maxBindingBytes?: number } = {}) {
  const ts = grads.map((g) => gpu.upload(g, [g.length]));
  const stats = gpu.empty([2]);
  const scratch = gpu.empty([gradNormScratchSize(gpu, ts, o)]);
  gradNormClip(gpu, ts, stats, scratch, { maxNorm, ...o });
  const out = await gpu.readF32(stats);
  gpu.release(...ts, stats, scratch);
  return out;
}

describe("global gradient norm and clip factor", () => {
  test("norm over a list of tensors; clip factor min(1, max/(norm+1e-6))", async () => {
    const grads = SIZES.map((n, i) => randn(n, 10 + i, 0.1));
    const norm = gradNormRef(grads);
    const total = SIZES.reduce((a, b) => a + b, 0);
    for (const maxNorm of [norm / 3, norm * 2, 0]) {
      const [gNorm, gClip] = await normOnGpu(grads, maxNorm);
      expectClose([gNorm!], [norm], forReduction("f32", total), "norm");
      expectClose([gClip!], [clipFactorRef(norm, maxNorm)], forReduction("f32", total), `clip for maxNorm=${maxNorm}`);
    }
    expect(clipFactorRef(norm, norm / 3)).toBeLessThan(0.34);
    expect(clipFactorRef(norm, norm * 2)).toBe(1);
  });

  test("binding windows (forced small binding limit)", async () => {
    const grads = [randn(5003, 1), randn(17, 2), randn(12345, 3)];
    const [gNorm] = await normOnGpu(grads, 1, { maxBindingBytes: 4096 });
    expectClose([gNorm!], [gradNormRef(grads)], forReduction("f32", 17365), "norm in windows");
  });

  test("a non-finite gradient gives clip factor −1 (step skipped)", async () => {
    const g = randn(100, 4);
    g[17] = Infinity;
    const [n1, c1] = await normOnGpu([randn(10, 5), g], 1);
    expect(n1).toBe(Infinity);
    expect(c1).toBe(-1);
    const big = new Float32Array(50).fill(1e30); // squares overflow f32
    const [, c2] = await normOnGpu([big], 0);
    expect(c2).toBe(-1);
  });
});

describe("adamw step", () => {
  async function steps(n: number, seed: number, o: Partial<AdamwOptions> & { clip?: number; maxNorm?: number }, nSteps: number) {
    const p = randn(n, seed), m = new Float32Array(n), v = new Float32Array(n);
    const tp = gpu.upload(p, [n]), tm = gpu.upload(m, [n]), tv = gpu.upload(v, [n]);
    const wantP = Float64Array.from(p), wantM = new Float64Array(n), wantV = new Float64Array(n);
    for (let step = 1; step <= nSteps; step++) {
      const g = randn(n, seed + 100 * step, 0.5);
      const tg = gpu.upload(g, [n]);
      let stats: Tensor | undefined;
      let clip = 1;
      if (o.maxNorm !== undefined) {
        stats = gpu.empty([2]);
        const scratch = gpu.empty([gradNormScratchSize(gpu, [tg])]);
        gradNormClip(gpu, [tg], stats, scratch, { maxNorm: o.maxNorm });
        clip = clipFactorRef(gradNormRef([g]), o.maxNorm);
        gpu.release(scratch);
      }
      adamw(gpu, tp, tg, tm, tv, { ...HP, ...o, step, stats });
      adamwRef(wantP, Float64Array.from(g), wantM, wantV, { ...HP, ...o, step }, clip);
      if (o.zeroGrad) expect(Array.from(await gpu.readF32(tg)).every((x) => x === 0)).toBe(true);
      gpu.release(tg, ...(stats ? [stats] : []));
    }
    const [gp, gm, gv] = (await gpu.readMany([tp, tm, tv])).map((b) => new Float32Array(b));
    const tol = { rtol: 2e-5, atol: 2e-6 };
    const label = `n=${n} ${JSON.stringify(o)}`;
    expectClose(gp!, wantP, tol, `param ${label}`);
    expectClose(gm!, wantM, tol, `m ${label}`);
    expectClose(gv!, wantV, { rtol: 2e-5, atol: 1e-9 }, `v ${label}`);
    gpu.release(tp, tm, tv);
  }

  test("reference: first step moves each weight by lr·g/(|g|+eps) after decay", () => {
    const p = new Float64Array([1, -2, 0.5]), g = new Float64Array([0.3, -4, 1e-9]);
    const m = new Float64Array(3), v = new Float64Array(3);
    adamwRef(p, g, m, v, { ...HP, step: 1 });
    const want = [1, -2, 0.5].map((x, i) => x * (1 - HP.lr * HP.weightDecay) - (HP.lr * g[i]!) / (Math.abs(g[i]!) + HP.eps));
    for (let i = 0; i < 3; i++) expect(p[i]).toBeCloseTo(want[i]!, 12);
  });

  test("GPU vs reference over several steps, odd sizes", async () => {
    let seed = 1;
    for (const n of SIZES) await steps(n, seed++, {}, 3);
  });

  test("weight decay off, zeroGrad, other betas", async () => {
    await steps(1031, 7, { weightDecay: 0, zeroGrad: true, beta1: 0.8, beta2: 0.95, lr: 3e-4 }, 4);
  });

  test("gradients clipped by the GPU-computed factor (no readback)", async () => {
    await steps(5000, 9, { maxNorm: 1.0 }, 3); // ‖g‖ ≈ 0.5·√5000 ≈ 35 → factor ≈ 0.03
    await steps(100, 10, { maxNorm: 1e6 }, 2); // factor 1
  });

  test("a step with a non-finite gradient leaves param, m and v unchanged", async () => {
    const n = 300;
    const p = randn(n, 1), m = randn(n, 2, 0.01), v = new Float32Array(n).fill(1e-4), g = randn(n, 3);
    g[5] = -Infinity;
    const tp = gpu.upload(p, [n]), tm = gpu.upload(m, [n]), tv = gpu.upload(v, [n]), tg = gpu.upload(g, [n]);
    const stats = gpu.empty([2]), scratch = gpu.empty([gradNormScratchSize(gpu, [tg])]);
    gradNormClip(gpu, [tg], stats, scratch, { maxNorm: 1 });
    adamw(gpu, tp, tg, tm, tv, { ...HP, step: 5, stats, zeroGrad: true });
    const [gp, gm, gv, gg] = (await gpu.readMany([tp, tm, tv, tg])).map((b) => new Float32Array(b));
    expect(Array.from(gp!)).toEqual(Array.from(p));
    expect(Array.from(gm!)).toEqual(Array.from(m));
    expect(Array.from(gv!)).toEqual(Array.from(v));
    expect(gg!.every((x) => x === 0)).toBe(true);
    gpu.release(tp, tm, tv, tg, stats, scratch);
  });

  test("binding windows (forced small binding limit)", async () => {
    const n = 5003;
    const p = randn(n, 21), g = randn(n, 22), m = randn(n, 23, 0.01), v = new Float32Array(n).fill(2e-4);
    const tp = gpu.upload(p, [n]), tg = gpu.upload(g, [n]), tm = gpu.upload(m, [n]), tv = gpu.upload(v, [n]);
    const before = gpu.dispatchCount;
    adamw(gpu, tp, tg, tm, tv, { ...HP, step: 3, maxBindingBytes: 2048 });
    expect(gpu.dispatchCount - before).toBeGreaterThan(9);
    const wantP = Float64Array.from(p), wantM = Float64Array.from(m), wantV = Float64Array.from(v);
    adamwRef(wantP, Float64Array.from(g), wantM, wantV, { ...HP, step: 3 });
    const [gp, gm, gv] = (await gpu.readMany([tp, tm, tv])).map((b) => new Float32Array(b));
    expectClose(gp!, wantP, { rtol: 2e-5, atol: 2e-6 }, "param windows");
    expectClose(gm!, wantM, { rtol: 2e-5, atol: 2e-6 }, "m windows");
    expectClose(gv!, wantV, { rtol: 2e-5, atol: 1e-9 }, "v windows");
    gpu.release(tp, tg, tm, tv);
  });
});
