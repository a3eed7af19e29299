import { describe, test, expect, beforeAll, setDefaultTimeout } from "bun:test";
import { getGpu, type Gpu } from "../src/gpu/runtime.ts";
import {
  logprobs,
  logprobsBackward,
  logprobsPlan,
  logprobsScratchBytes,
  lastLogits,
  lastLogitsScratch,
  PORTABLE_BINDING_BYTES,
  type LogprobsDims,
  type LogprobsBackwardOptions,
  type LogprobsOptions,
} from "../src/ops/logprobs.ts";
import { logprobsRef, logprobsBackwardRef, lastLogitsRef } from "../src/ops/logprobs.ref.ts";
import { randn, rng, expectClose, forReduction, numericGradient, sampleIndices, dot } from "./harness.ts";

// First use compiles pipelines (seconds each on lavapipe with a cold Mesa shader cache), beyond Bun's 5 s default.
setDefaultTimeout(60_000);

let gpu: Gpu;
beforeAll(async () => {
  gpu = await getGpu();
});

const IGNORE = 0xffffffff;

interface Problem {
  d: LogprobsDims;
  h: Float32Array;
  W: Float32Array;
  targets: Uint32Array;
  dlogprob: Float32Array;
  dentropy: Float32Array;
}

function problem(d: LogprobsDims, seed: number, logitScale = 1): Problem {
  const r = rng(seed);
  const targets = Uint32Array.from({ length: d.N }, () => Math.floor(r() * d.V));
  // Edge ids: the first and last of the vocabulary, and an ignored row.
  targets[0] = d.V - 1;
  if (d.N > 1) targets[1] = 0;
  if (d.N > 2) targets[2] = IGNORE;
  return {
    d,
    h: randn(d.N * d.D, seed + 1, logitScale),
    W: randn(d.V * d.D, seed + 2, 1 / Math.sqrt(d.D)),
    targets,
    dlogprob: randn(d.N, seed + 3),
    dentropy: randn(d.N, seed + 4),
  };
}

async function gpuForward(p: Problem, opts: Parameters<typeof logprobs>[9] = {}) {
  const { d } = p;
  const plan = logprobsPlan(d, opts);
  const h = gpu.upload(p.h, [d.N, d.D]), W = gpu.upload(p.W, [d.V, d.D]), t = gpu.upload(p.targets, [d.N]);
  const lp = gpu.empty([d.N]), ent = gpu.empty([d.N]), lse = gpu.empty([d.N]), scratch = gpu.empty([plan.scratchElements]);
  logprobs(gpu, h, W, t, lp, ent, lse, scratch, d, opts);
  const [a, b, c] = await gpu.readMany([lp, ent, lse]);
  gpu.release(h, W, t, lp, ent, lse, scratch);
  return { logprob: new Float32Array(a!), entropy: new Float32Array(b!), lse: new Float32Array(c!) };
}

async function gpuBackward(p: Problem, opts: LogprobsBackwardOptions, dh0: Float32Array, dW0: Float32Array) {
  const { d } = p;
  const plan = logprobsPlan(d, opts);
  const h = gpu.upload(p.h, [d.N, d.D]), W = gpu.upload(p.W, [d.V, d.D]), t = gpu.upload(p.targets, [d.N]);
  const lp = gpu.empty([d.N]), ent = gpu.empty([d.N]), lse = gpu.empty([d.N]), scratch = gpu.empty([plan.scratchElements]);
  const glp = gpu.upload(p.dlogprob, [d.N]), gent = gpu.upload(p.dentropy, [d.N]);
  const dh = gpu.upload(dh0, [d.N, d.D]), dW = gpu.upload(dW0, [d.V, d.D]);
  logprobs(gpu, h, W, t, lp, ent, lse, scratch, d, opts);
  logprobsBackward(gpu, h, W, t, lse, ent, glp, gent, dh, dW, scratch, d, opts);
  const [a, b] = await gpu.readMany([dh, dW]);
  gpu.release(h, W, t, lp, ent, lse, scratch, glp, gent, dh, dW);
  return { dh: new Float32Array(a!), dW: new Float32Array(b!) };
}

const D1: LogprobsDims = { N: 29, V: 1007, D: 37 };
const VARIANTS: [string, LogprobsDims, LogprobsOptions, number][] = [
  ["one chunk, one slice", D1, {}, 1],
  ["chunks of 8, slices of 100 (V = 1007: a 7-wide last slice)", D1, { chunk: 8, vocabSlice: 100 }, 1],
  ["temperature 0.7, chunks of 5, slices of 333", D1, { chunk: 5, vocabSlice: 333, temperature: 0.7 }, 1],
  ["large logits (±40) across slices", { N: 9, V: 301, D: 16 }, { chunk: 4, vocabSlice: 64 }, 10],
];

describe("logprobs forward vs CPU reference", () => {
  let seed = 10;
  for (const [name, d, opts, scale] of VARIANTS) {
    const s = (seed += 10);
    test(name, async () => {
      const p = problem(d, s, scale);
      const got = await gpuForward(p, opts);
      const want = logprobsRef(p.h, p.W, p.targets, d, opts);
      const tol = forReduction("f32", d.D * scale);
      expectClose(got.lse, want.lse, tol, `${name} lse`);
      expectClose(got.logprob, want.logprob, tol, `${name} logprob`);
      expectClose(got.entropy, want.entropy, tol, `${name} entropy`);
      expect(got.logprob[2]).toBe(0); // ignored target
    });
  }

  test("tiny slices (3 ids) give the same result as one slice", async () => {
    const p = problem({ N: 7, V: 50, D: 9 }, 77);
    const one = await gpuForward(p, {});
    const many = await gpuForward(p, { vocabSlice: 3, chunk: 3 });
    const tol = { rtol: 2e-6, atol: 2e-6 };
    expectClose(many.logprob, one.logprob, tol, "logprob");
    expectClose(many.entropy, one.entropy, tol, "entropy");
    expectClose(many.lse, one.lse, tol, "lse");
  });
});

describe("logprobs backward", () => {
  let seed = 500;
  for (const [name, d, opts, scale] of VARIANTS) {
    const s = (seed += 10);
    test(`GPU vs reference: ${name}`, async () => {
      const p = problem(d, s, scale);
      const dW0 = randn(d.V * d.D, s + 7); // dW accumulates
      const got = await gpuBackward(p, opts, new Float32Array(d.N * d.D).fill(NaN), dW0);
      const want = logprobsBackwardRef(p.h, p.W, p.targets, p.dlogprob, p.dentropy, d, opts);
      const tol = forReduction("f32", d.D * scale);
      expectClose(got.dh, want.dh, tol, `${name} dh`);
      expectClose(got.dW, want.dW.map((g, i) => g + dW0[i]!), tol, `${name} dW`);
    });
  }

  test("accumulateDh adds into dh, and tiny slices give the same gradients", async () => {
    const d = { N: 7, V: 50, D: 9 };
    const p = problem(d, 91);
    const dh0 = randn(d.N * d.D, 92), dW0 = new Float32Array(d.V * d.D);
    const a = await gpuBackward(p, { accumulateDh: true }, dh0, dW0);
    const b = await gpuBackward(p, { accumulateDh: true, vocabSlice: 3, chunk: 2 }, dh0, dW0);
    const want = logprobsBackwardRef(p.h, p.W, p.targets, p.dlogprob, p.dentropy, d);
    const tol = forReduction("f32", d.D);
    expectClose(a.dh, want.dh.map((g, i) => g + dh0[i]!), tol, "dh (one slice)");
    expectClose(b.dh, want.dh.map((g, i) => g + dh0[i]!), tol, "dh (slices of 3)");
    expectClose(b.dW, want.dW, tol, "dW (slices of 3)");
  });

  test("any number of lanes per row (several rows per workgroup) gives the same bits, forward and backward", async () => {
    for (const [d, opts] of [[D1, {}], [D1, { chunk: 8, vocabSlice: 100 }], [{ N: 13, V: 5000, D: 12 }, { temperature: 0.9 }]] as const) {
      const p = problem(d, 640);
      const dh0 = new Float32Array(d.N * d.D), dW0 = new Float32Array(d.V * d.D);
      const one = await gpuForward(p, { ...opts, rowLanes: 64 });
      const oneB = await gpuBackward(p, { ...opts, rowLanes: 64 }, dh0, dW0);
      for (const rowLanes of [8, 16, 32, undefined]) {
        const f = await gpuForward(p, { ...opts, rowLanes });
        const b = await gpuBackward(p, { ...opts, rowLanes }, dh0, dW0);
        for (const [what, x, y] of [["logprob", f.logprob, one.logprob], ["entropy", f.entropy, one.entropy], ["lse", f.lse, one.lse], ["dh", b.dh, oneB.dh], ["dW", b.dW, oneB.dW]] as const) {
          expect({ what, rowLanes, bits: [...new Uint32Array(x.buffer)] }).toEqual({ what, rowLanes, bits: [...new Uint32Array(y.buffer)] });
        }
      }
    }
  });

  test("reference backward matches finite differences", () => {
    for (const temperature of [1, 0.8]) {
      const d = { N: 4, V: 11, D: 5 };
      const p = problem(d, 321);
      const g = logprobsBackwardRef(p.h, p.W, p.targets, p.dlogprob, p.dentropy, d, { temperature });
      const loss = (h: ArrayLike<number>, W: ArrayLike<number>) => {
        const r = logprobsRef(h, W, p.targets, d, { temperature });
        return dot(r.logprob, p.dlogprob) + dot(r.entropy, p.dentropy);
      };
      const nh = numericGradient((x) => loss(x, p.W), p.h, sampleIndices(p.h.length, p.h.length, 1));
      const nW = numericGradient((x) => loss(p.h, x), p.W, sampleIndices(p.W.length, 30, 2));
      const tol = { rtol: 1e-5, atol: 1e-7 };
      expectClose([...nh.keys()].map((i) => g.dh[i]!), [...nh.values()], tol, `dh T=${temperature}`);
      expectClose([...nW.keys()].map((i) => g.dW[i]!), [...nW.values()], tol, `dW T=${temperature}`);
    }
  });
});

describe("lastLogits", () => {
  const d = { B: 3, V: 1007, D: 37, N: 20 };
  const h = randn(d.N * d.D, 900), W = randn(d.V * d.D, 901, 0.2);
  const rows = Uint32Array.from([19, 4, 11]);

  for (const [name, vocabSlice, withRows] of [
    ["selected rows, one slice", undefined, true],
    ["selected rows, slices of 100", 100, true],
    ["h is [B, D], slices of 333", 333, false],
  ] as const) {
    test(name, async () => {
      const dd = withRows ? d : { ...d, N: d.B };
      const hh = withRows ? h : h.subarray(0, d.B * d.D);
      const th = gpu.upload(hh, [dd.N, d.D]), tW = gpu.upload(W, [d.V, d.D]), out = gpu.upload(new Float32Array(d.B * d.V).fill(NaN), [d.B, d.V]);
      const tr = withRows ? gpu.upload(rows, [d.B]) : undefined;
      const need = lastLogitsScratch(dd, { rows: withRows, vocabSlice });
      expect(need.gathered > 0).toBe(withRows);
      expect(need.sliceScratch > 0).toBe(vocabSlice !== undefined);
      const gathered = need.gathered ? gpu.empty([need.gathered]) : undefined;
      const sliceScratch = need.sliceScratch ? gpu.empty([need.sliceScratch]) : undefined;
      lastLogits(gpu, th, tW, out, dd, { rows: tr, vocabSlice, gathered, sliceScratch });
      const got = await gpu.readF32(out);
      expectClose(got, lastLogitsRef(hh, W, dd, withRows ? rows : undefined), forReduction("f32", d.D), name);
      gpu.release(th, tW, out, ...[tr, gathered, sliceScratch].filter((t) => t !== undefined));
    });
  }
});

describe("logprobs at real sizes", () => {
  test("plans keep every binding under 128 MiB (Qwen2.5-0.5B head, and a 8192-wide one)", () => {
    const qwen = logprobsPlan({ N: 4096, V: 151936, D: 896 });
    expect(qwen.vocabSlice * 896 * 4).toBeLessThanOrEqual(PORTABLE_BINDING_BYTES);
    expect(qwen.scratchBytes).toBeLessThanOrEqual(PORTABLE_BINDING_BYTES);
    expect(qwen.slices).toBe(Math.ceil(151936 / qwen.vocabSlice));
    expect(logprobsScratchBytes({ N: 4096, V: 151936, D: 896 }, { chunk: 64 })).toBe(4 * (64 * qwen.vocabSlice + 4 * 64));
    const wide = logprobsPlan({ N: 10, V: 128256, D: 8192 });
    expect(wide.vocabSlice * 8192 * 4).toBeLessThanOrEqual(PORTABLE_BINDING_BYTES - 256);
    expect(wide.chunk).toBe(10);
  });

  test("an LM head over 128 MiB (40,000 × 896 f32) is read in slices", async () => {
    const d = { N: 3, V: 40000, D: 896 };
    expect(d.V * d.D * 4).toBeGreaterThan(PORTABLE_BINDING_BYTES);
    // A cheap deterministic fill (the PRNG would take seconds for 36M values).
    const W = new Float32Array(d.V * d.D);
    for (let i = 0; i < W.length; i++) W[i] = (((i * 2654435761) >>> 0) / 4294967296 - 0.5) * 0.2;
    const p: Problem = { d, h: randn(d.N * d.D, 5), W, targets: Uint32Array.from([39999, 0, 12345]), dlogprob: randn(d.N, 6), dentropy: randn(d.N, 7) };
    const plan = logprobsPlan(d);
    expect(plan.slices).toBeGreaterThan(1);
    const tW = gpu.upload(W, [d.V, d.D]), th = gpu.upload(p.h, [d.N, d.D]), tt = gpu.upload(p.targets, [d.N]);
    const lp = gpu.empty([d.N]), ent = gpu.empty([d.N]), lse = gpu.empty([d.N]), scratch = gpu.empty([plan.scratchElements]);
    const glp = gpu.upload(p.dlogprob, [d.N]), gent = gpu.upload(p.dentropy, [d.N]);
    const dh = gpu.empty([d.N, d.D]), dW = gpu.zeros([d.V, d.D]);
    const out = gpu.empty([d.N, d.V]);
    logprobs(gpu, th, tW, tt, lp, ent, lse, scratch, d, {});
    logprobsBackward(gpu, th, tW, tt, lse, ent, glp, gent, dh, dW, scratch, d, {});
    const lastScratch = gpu.empty([lastLogitsScratch({ B: d.N, V: d.V, D: d.D }).sliceScratch]);
    lastLogits(gpu, th, tW, out, { B: d.N, V: d.V, D: d.D }, { sliceScratch: lastScratch });
    const [a, b, c, e, f] = await gpu.readMany([lp, ent, dh, dW, out]);
    gpu.release(tW, th, tt, lp, ent, lse, scratch, glp, gent, dh, dW, out, lastScratch);
    const want = logprobsRef(p.h, W, p.targets, d);
    const tol = forReduction("f32", d.D);
    expectClose(new Float32Array(a!), want.logprob, tol, "logprob");
    expectClose(new Float32Array(b!), want.entropy, tol, "entropy");
    const wantG = logprobsBackwardRef(p.h, W, p.targets, p.dlogprob, p.dentropy, d);
    expectClose(new Float32Array(c!), wantG.dh, tol, "dh");
    expectClose(new Float32Array(e!), wantG.dW, tol, "dW");
    expectClose(new Float32Array(f!), lastLogitsRef(p.h, W, { B: d.N, V: d.V, D: d.D }), tol, "lastLogits");
  });
});
