import { describe, test, beforeAll, expect, setDefaultTimeout } from "bun:test";
import { getGpu, type Gpu } from "../src/gpu/runtime.ts";
import { NONFINITE_ROW, sample, type SamplingOptions } from "../src/ops/sampling.ts";
import { philox4x32, samplingUniform, sampleRowRef, sampledLogprobRef } from "../src/ops/sampling.ref.ts";
import { randn } from "./harness.ts";

// Cold lavapipe pipeline compiles on a busy machine can take seconds; the 5 s default is too tight.
setDefaultTimeout(60_000);

let gpu: Gpu;
beforeAll(async () => {
  gpu = await getGpu();
});

/** Samples every row of logits [B, V] on the GPU. seqIds default to 0..B-1, steps to 7. */
async function sampleGpu(logits: Float32Array, B: number, V: number, o: SamplingOptions, seqIds?: Uint32Array, steps?: Uint32Array) {
  const tl = gpu.upload(logits, [logits.length]);
  const ts = gpu.upload(seqIds ?? Uint32Array.from({ length: B }, (_, i) => i), [B]);
  const tt = gpu.upload(steps ?? new Uint32Array(B).fill(7), [B]);
  const to = gpu.empty([B], "u32");
  sample(gpu, tl, to, ts, tt, { B, V }, o);
  const ids = await gpu.readU32(to);
  gpu.release(tl, ts, tt, to);
  return ids;
}

/** The same row repeated B times (B independent draws: one per sequence id). */
function repeatRow(row: number[], B: number): Float32Array {
  const out = new Float32Array(B * row.length);
  for (let b = 0; b < B; b++) out.set(row, b * row.length);
  return out;
}

function counts(ids: Uint32Array, V: number): number[] {
  const c = new Array<number>(V).fill(0);
  for (const id of ids) c[id]!++;
  return c;
}

/** Each observed frequency within 5 standard errors (plus a little slack) of its probability. */
function expectFrequencies(c: number[], probs: number[], n: number, label: string) {
  const bad: string[] = [];
  probs.forEach((q, i) => {
    const f = c[i]! / n;
    const bound = 5 * Math.sqrt((q * (1 - q)) / n) + 2 / n;
    if (Math.abs(f - q) > bound) bad.push(`id ${i}: frequency ${f.toFixed(4)} vs probability ${q.toFixed(4)}`);
  });
  expect(bad.length ? `${label}: ${bad.join("; ")}` : "ok").toBe("ok");
}

describe("Philox4x32-10", () => {
  test("Random123 known-answer vectors", () => {
    expect(philox4x32([0, 0, 0, 0], [0, 0])).toEqual([0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
    expect(philox4x32([0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0xffffffff, 0xffffffff])).toEqual([0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]);
    expect(philox4x32([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0])).toEqual([0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]);
  });

  test("the GPU draws the same uniforms as the reference", async () => {
    // 1024 equal logits: the CDF steps are exact multiples of 1/1024, so id = floor(u·1024).
    const B = 300, V = 1024;
    const seqIds = Uint32Array.from({ length: B }, (_, i) => i * 7919);
    const steps = Uint32Array.from({ length: B }, (_, i) => 100000 + i);
    const seed = 2 ** 40 + 12345;
    const ids = await sampleGpu(new Float32Array(B * V), B, V, { temperature: 1, seed }, seqIds, steps);
    for (let b = 0; b < B; b++) expect(ids[b]).toBe(Math.floor(samplingUniform(seed, seqIds[b]!, steps[b]!) * V));
  });
});

describe("sampling distributions", () => {
  const N = 4000;

  test("temperature sampling matches softmax(logits / T)", async () => {
    const row = [1.0, 2.0, 0.5, -1.0, 3.0, 0.0];
    for (const T of [1, 0.7, 2]) {
      const ids = await sampleGpu(repeatRow(row, N), N, row.length, { temperature: T, seed: 11 });
      const z = row.map((x) => Math.exp(x / T));
      const s = z.reduce((a, b) => a + b, 0);
      expectFrequencies(counts(ids, row.length), z.map((x) => x / s), N, `T=${T}`);
    }
  });

  test("top-k keeps exactly the k largest (and ties at the boundary)", async () => {
    const row = [0.3, 2.0, 1.5, -1.0, 2.5, 1.5, 0.0];
    const ids = await sampleGpu(repeatRow(row, N), N, row.length, { temperature: 1, topK: 3, seed: 5 });
    const c = counts(ids, row.length);
    // k = 3: 2.5, 2.0 and the two tied 1.5s are kept; everything else never appears.
    for (const i of [0, 3, 6]) expect(c[i]).toBe(0);
    const keep = [1, 2, 4, 5];
    const z = row.map((x, i) => (keep.includes(i) ? Math.exp(x) : 0));
    const s = z.reduce((a, b) => a + b, 0);
    expectFrequencies(c, z.map((x) => x / s), N, "top-k");
    const one = await sampleGpu(repeatRow(row, 200), 200, row.length, { temperature: 1.5, topK: 1, seed: 6 });
    expect(Array.from(one).every((id) => id === 4)).toBe(true);
  });

  test("top-p keeps the smallest top set reaching mass p", async () => {
    const probs = [0.1, 0.5, 0.15, 0.25]; // sorted: 0.5, 0.25, 0.15, 0.1
    const row = probs.map(Math.log);
    const cases: [number, number[]][] = [
      [0.3, [1]], // 0.5 alone reaches 0.3
      [0.7, [1, 3]], // mass above 0.25 is 0.5 < 0.7 → kept; above 0.15 is 0.75 ≥ 0.7 → dropped
      [0.8, [1, 3, 2]],
      [0.95, [0, 1, 2, 3]],
    ];
    for (const [p, keep] of cases) {
      const ids = await sampleGpu(repeatRow(row, N), N, row.length, { temperature: 1, topP: p, seed: 21 });
      const c = counts(ids, row.length);
      for (let i = 0; i < row.length; i++) if (!keep.includes(i)) expect(c[i]).toBe(0);
      const s = keep.reduce((a, i) => a + probs[i]!, 0);
      expectFrequencies(c, probs.map((q, i) => (keep.includes(i) ? q / s : 0)), N, `top-p ${p}`);
    }
  });

  test("top-k then top-p (renormalised after top-k), with temperature", async () => {
    const row = [Math.log(0.4), Math.log(0.3), Math.log(0.2), Math.log(0.1)].map((x) => x * 0.5); // T = 0.5 restores them
    // top-k 2 → {0: 4/7, 1: 3/7}; top-p 0.5 → mass above id 1 is 4/7 ≥ 0.5 → only id 0.
    const ids = await sampleGpu(repeatRow(row, 500), 500, 4, { temperature: 0.5, topK: 2, topP: 0.5, seed: 3 });
    expect(Array.from(ids).every((id) => id === 0)).toBe(true);
    // top-k 3 → {4/9, 3/9, 2/9}; top-p 0.75: above id 1 is 4/9 < 0.75 (kept), above id 2 is 7/9 (dropped).
    const ids2 = await sampleGpu(repeatRow(row, N), N, 4, { temperature: 0.5, topK: 3, topP: 0.75, seed: 4 });
    expectFrequencies(counts(ids2, 4), [4 / 7, 3 / 7, 0, 0], N, "top-k 3 + top-p 0.75");
  });

  test("-inf (masked) logits are never sampled", async () => {
    const row = [0, -Infinity, 1, -Infinity, 0.5];
    const ids = await sampleGpu(repeatRow(row, 1000), 1000, 5, { temperature: 1, seed: 8 });
    const c = counts(ids, 5);
    expect(c[1]).toBe(0);
    expect(c[3]).toBe(0);
    expect(c[0]! > 0 && c[2]! > 0 && c[4]! > 0).toBe(true);
  });
});

describe("greedy and reproducibility", () => {
  test("greedy is argmax with ties to the lowest id", async () => {
    const rows = [
      [1, 5, 3, 5, 5],
      [-3, -1, -1, -2, -9],
      [7, 7, 7, 7, 7],
      [0, 0, 0, 0, 1],
    ];
    const ids = await sampleGpu(Float32Array.from(rows.flat()), 4, 5, { temperature: 0, seed: 0 });
    expect(Array.from(ids)).toEqual([1, 1, 0, 4]);
    // A long row: a tie between a late and an early id resolves to the early one.
    const V = 151936;
    const big = randn(V, 3);
    big[100000] = 9;
    big[70001] = 9;
    const [g] = await sampleGpu(big, 1, V, { temperature: 0, seed: 0 });
    expect(g).toBe(70001);
  });

  test("same (seed, sequence, step) → same token, whatever the batch; different steps differ", async () => {
    const V = 50;
    const row = Array.from(randn(V, 9));
    const others = randn(V * 5, 10);
    // Sequence 42 at step 3, alone and at position 4 of a batch of 6 with other sequences.
    const alone = await sampleGpu(Float32Array.from(row), 1, V, { temperature: 1, seed: 99 }, Uint32Array.of(42), Uint32Array.of(3));
    const batch = new Float32Array(6 * V);
    batch.set(others.subarray(0, 4 * V), 0);
    batch.set(row, 4 * V);
    batch.set(others.subarray(4 * V), 5 * V);
    const mixed = await sampleGpu(batch, 6, V, { temperature: 1, seed: 99 }, Uint32Array.of(1, 2, 3, 4, 42, 5), Uint32Array.of(9, 9, 9, 9, 3, 9));
    expect(mixed[4]).toBe(alone[0]!);
    // Steps 0..63 of one sequence: many different tokens (the RNG advances with the step).
    const steps = Uint32Array.from({ length: 64 }, (_, i) => i);
    const seq = await sampleGpu(repeatRow(row, 64), 64, V, { temperature: 1, seed: 99 }, new Uint32Array(64).fill(42), steps);
    expect(new Set(seq).size).toBeGreaterThan(10);
    // Another seed gives other draws.
    const reseeded = await sampleGpu(repeatRow(row, 64), 64, V, { temperature: 1, seed: 100 }, new Uint32Array(64).fill(42), steps);
    expect(Array.from(reseeded)).not.toEqual(Array.from(seq));
  });

  test("firstRow samples a range of rows: the same ids and log-probs as sampling all, rows outside untouched", async () => {
    const B = 13, V = 37;
    const logits = randn(B * V, 21, 2);
    const tl = gpu.upload(logits, [B * V]);
    const ts = gpu.upload(Uint32Array.from({ length: B }, (_, i) => 100 + i), [B]);
    const tt = gpu.upload(Uint32Array.from({ length: B }, (_, i) => 5 + i), [B]);
    const all = gpu.empty([B], "u32"), allLp = gpu.empty([B]);
    sample(gpu, tl, all, ts, tt, { B, V }, { temperature: 0.8, topP: 0.9, seed: 3, logprob: allLp });
    const part = gpu.upload(new Uint32Array(B).fill(12345), [B]), partLp = gpu.upload(new Float32Array(B).fill(-7), [B]);
    sample(gpu, tl, part, ts, tt, { B: 6, V }, { temperature: 0.8, topP: 0.9, seed: 3, logprob: partLp, firstRow: 5 });
    const [a, al, p, pl] = await gpu.readMany([all, allLp, part, partLp]);
    const [ids, lps, pids, plps] = [new Uint32Array(a!), new Float32Array(al!), new Uint32Array(p!), new Float32Array(pl!)];
    for (let b = 0; b < B; b++) {
      if (b >= 5 && b < 11) {
        expect(pids[b]).toBe(ids[b]!);
        expect(plps[b]).toBe(lps[b]!);
      } else {
        expect(pids[b]).toBe(12345);
        expect(plps[b]).toBe(-7);
      }
    }
    expect(() => sample(gpu, tl, part, ts, tt, { B: 6, V }, { temperature: 1, seed: 3, firstRow: 8 })).toThrow(/logits|entries/);
    gpu.release(tl, ts, tt, all, allLp, part, partLp);
  });
});

describe("GPU vs CPU reference on random logits", () => {
  const configs: SamplingOptions[] = [
    { temperature: 1, seed: 1 },
    { temperature: 0.6, topK: 20, seed: 2 },
    { temperature: 1.3, topP: 0.9, seed: 3 },
    { temperature: 0.8, topK: 50, topP: 0.7, seed: 4 },
    { temperature: 1, topK: 1000, topP: 0.999, seed: 5 },
  ];
  // 8 lanes a row is lavapipe's choice, 256 a GPU's; 1 and 64 check the reductions at the extremes in between.
  test.each([1, 8, 64, 256])("same tokens row by row (odd V, rows of different scales), %i lanes a row", async (lanes) => {
    const B = 24, V = 1001;
    const logits = new Float32Array(B * V);
    for (let b = 0; b < B; b++) logits.set(randn(V, 100 + b, 0.5 + b / 4), b * V);
    let boundary = 0;
    for (const c of configs) {
      const o = { ...c, lanes };
      const ids = await sampleGpu(logits, B, V, o);
      for (let b = 0; b < B; b++) {
        const ref = sampleRowRef(logits.subarray(b * V, (b + 1) * V), V, o, b, 7);
        expect(ref.kept).toContain(ids[b]!);
        if (ids[b] !== ref.id) {
          // float32 vs float64 may only disagree right at a decision boundary.
          expect(ref.margin).toBeLessThan(1e-5);
          boundary++;
        }
      }
    }
    expect(boundary).toBeLessThanOrEqual(2);
  });

  test("a Qwen-sized vocabulary, a wider row stride and row windows", async () => {
    const V = 151936, stride = 152064, B = 3;
    const logits = randn(B * stride, 17, 2);
    const o: SamplingOptions = { temperature: 0.9, topK: 40, topP: 0.95, seed: 77, rowStride: stride, maxBindingBytes: stride * 4 + 64 };
    const before = gpu.dispatchCount;
    const ids = await sampleGpu(logits, B, V, o);
    expect(gpu.dispatchCount - before).toBe(B); // one row per window
    for (let b = 0; b < B; b++) {
      const ref = sampleRowRef(logits.subarray(b * stride, b * stride + V), V, o, b, 7);
      expect(ref.kept.length).toBeGreaterThanOrEqual(1);
      expect(ref.kept.length).toBeLessThanOrEqual(40);
      if (ids[b] !== ref.id) expect(ref.margin).toBeLessThan(1e-5);
      else expect(ids[b]).toBe(ref.id);
    }
  });

  test("the log-prob of each sampled id is log softmax(logits / T) at it (greedy: T = 1), with and without filters and windows", async () => {
    const B = 12, V = 1001;
    const logits = new Float32Array(B * V);
    for (let b = 0; b < B; b++) logits.set(randn(V, 300 + b, 0.5 + b / 2), b * V);
    logits[3 * V + 5] = -Infinity; // a masked entry contributes nothing
    const opts: SamplingOptions[] = [
      { temperature: 0, seed: 1 },
      { temperature: 1, seed: 2 },
      { temperature: 0.6, topK: 20, seed: 3 },
      { temperature: 1.3, topP: 0.8, seed: 4 },
      { temperature: 0.9, topK: 50, topP: 0.9, seed: 5, maxBindingBytes: 3 * V * 4 + 64 },
    ];
    for (const o of opts) {
      const tl = gpu.upload(logits, [logits.length]);
      const ts = gpu.upload(Uint32Array.from({ length: B }, (_, i) => i), [B]);
      const tt = gpu.upload(new Uint32Array(B).fill(7), [B]);
      const to = gpu.empty([B], "u32");
      const tp = gpu.empty([B]);
      sample(gpu, tl, to, ts, tt, { B, V }, { ...o, logprob: tp });
      const [idsBuf, lpBuf] = await gpu.readMany([to, tp]);
      const ids = new Uint32Array(idsBuf!), lps = new Float32Array(lpBuf!);
      // The same ids as without the log-prob output.
      expect([...(await sampleGpu(logits, B, V, o))]).toEqual([...ids]);
      for (let b = 0; b < B; b++) {
        const want = sampledLogprobRef(logits.subarray(b * V, (b + 1) * V), V, ids[b]!, o.temperature);
        expect(lps[b]!).toBeLessThanOrEqual(1e-6);
        expect(Math.abs(lps[b]! - want)).toBeLessThan(1e-4 * Math.max(1, Math.abs(want)));
      }
      gpu.release(tl, ts, tt, to, tp);
    }
  });

  test("bad options are refused", () => {
    const t = gpu.empty([4]), u = gpu.empty([1], "u32");
    expect(() => sample(gpu, t, u, u, u, { B: 1, V: 4 }, { temperature: 1, topP: 0, seed: 1 })).toThrow(/topP/);
    expect(() => sample(gpu, t, u, u, u, { B: 1, V: 4 }, { temperature: 1, topK: -1, seed: 1 })).toThrow(/topK/);
    expect(() => sample(gpu, t, t, u, u, { B: 1, V: 4 }, { temperature: 1, seed: 1 })).toThrow(/u32/);
    expect(() => sample(gpu, t, u, u, u, { B: 1, V: 4 }, { temperature: 1, seed: 1, logprob: u })).toThrow(/logprob must be f32/);
    expect(() => sample(gpu, t, u, u, u, { B: 1, V: 4 }, { temperature: 1, seed: 1, lanes: 48 })).toThrow(/lanes must be a power of two/);
    gpu.release(t, u);
  });
});

describe("non-finite logits", () => {
  test("a row holding NaN or +Inf is marked (no id is drawn from it), greedy or sampled; −Inf stays a masked id; other rows are unaffected", async () => {
    const B = 4, V = 301;
    const logits = new Float32Array(B * V);
    for (let b = 0; b < B; b++) logits.set(randn(V, 900 + b), b * V);
    logits[1 * V + 7] = Number.NaN;
    logits[2 * V + 300] = Number.POSITIVE_INFINITY;
    logits[3 * V + 0] = Number.NEGATIVE_INFINITY;
    for (const o of [{ temperature: 0, seed: 1 }, { temperature: 1, topP: 0.9, seed: 2 }] as SamplingOptions[]) {
      const ids = await sampleGpu(logits, B, V, o);
      for (let b = 0; b < B; b++) expect(ids[b]).toBe(sampleRowRef(logits.subarray(b * V, (b + 1) * V), V, o, b, 7).id);
      expect([ids[1], ids[2]]).toEqual([NONFINITE_ROW, NONFINITE_ROW]);
      expect(ids[0]).toBeLessThan(V);
      expect(ids[3]).toBeGreaterThan(0);
      expect(ids[3]).toBeLessThan(V);
    }
  });
});
